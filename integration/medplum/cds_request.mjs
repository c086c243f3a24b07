// A real CDS Hooks client filling a service's prefetch: Medplum's `buildCdsRequest` (@medplum/core),
// pointed at a FHIR server on loopback. Reads {"fhirBase", "service", "context", "user"} as JSON on
// stdin (fhirBase like http://127.0.0.1:PORT/fhir; service: one entry of the discovery answer) and
// prints the CDS request it builds: a template `Type/{{context.x}}` becomes a read, anything else one
// search (first page only); a template it cannot fill becomes null.
if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = class WebSocketPlaceholder {
    constructor() {
      throw new Error('WebSocket is not available here');
    }
  };
}
const { MedplumClient, buildCdsRequest } = await import('@medplum/core');

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const url = new URL(input.fhirBase);
const medplum = new MedplumClient({
  baseUrl: `${url.protocol}//${url.host}/`,
  fhirUrlPath: url.pathname.replace(/^\/+|\/+$/g, ''),
  cacheTime: 0,
});
const requests = [];
for (const call of input.calls) {
  requests.push(await buildCdsRequest(medplum, call.user, input.service, call.context));
}
process.stdout.write(JSON.stringify(requests));
