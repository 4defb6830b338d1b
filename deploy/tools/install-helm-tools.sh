#!/usr/bin/env bash
# Builds Helm and helm-unittest from the Go module proxy (kubernetes-validate is a dev
# dependency in uv.lock, run from the project venv). Idempotent: binaries are cached by
# version in ~/.cache/murmur/bin, so a second run only checks that they are there. Prints
# the bin directory on its last line.
#
# Environment knobs (all optional):
#   MURMUR_TOOLS_DIR      cache root (default ~/.cache/murmur)
#   HELM_VERSION          Helm 3 release to build (default below)
#   HELM_UNITTEST_VERSION helm-unittest release to build (default below)
#   KUBE_VERSION          default Kubernetes version compiled into Helm (major.minor)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HELM_UNITTEST_VERSION="${HELM_UNITTEST_VERSION:-v1.1.2}"
KUBE_VERSION="${KUBE_VERSION:-1.32}"
ROOT="${MURMUR_TOOLS_DIR:-${HOME}/.cache/murmur}"
BIN="${ROOT}/bin"
mkdir -p "${BIN}"

# Only registries are reachable: the proxy for modules; no toolchain downloads.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:--mod=mod}"
export GOPATH="${GOPATH:-$(go env GOPATH)}"

log() { printf '[install-helm-tools] %s\n' "$*" >&2; }

kube_major="${KUBE_VERSION%%.*}"
kube_minor="${KUBE_VERSION#*.}"
helm_bin="${BIN}/helm-${HELM_VERSION}-k${KUBE_VERSION}"
if [[ ! -x "${helm_bin}" ]]; then
    log "building helm ${HELM_VERSION} (default kube ${KUBE_VERSION})"
    start=$(date +%s)
    gobin="$(mktemp -d)"
    # A `go install` built Helm would claim Kubernetes 1.20 and version "v3.x-dev"; set both
    # the way Helm's own Makefile does so `.Capabilities.KubeVersion` is current by default.
    GOBIN="${gobin}" go install -trimpath -ldflags "\
-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${kube_major} \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${kube_minor} \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${kube_major} \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${kube_minor}" \
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
    mv "${gobin}/helm" "${helm_bin}.tmp" && mv "${helm_bin}.tmp" "${helm_bin}"
    rmdir "${gobin}"
    log "helm built in $(( $(date +%s) - start ))s"
fi
ln -sfn "$(basename "${helm_bin}")" "${BIN}/helm"

unittest_bin="${BIN}/helm-unittest-${HELM_UNITTEST_VERSION}"
if [[ ! -x "${unittest_bin}" ]]; then
    log "building helm-unittest ${HELM_UNITTEST_VERSION}"
    start=$(date +%s)
    module="github.com/helm-unittest/helm-unittest"
    # Its go.mod has a replace directive, which `go install pkg@version` refuses: download the
    # module and build inside a writable copy, where the replace applies.
    dir="$(go mod download -json "${module}@${HELM_UNITTEST_VERSION}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    work="$(mktemp -d)"
    cp -r "${dir}/." "${work}/"
    chmod -R u+w "${work}"
    (cd "${work}" && go build -trimpath -o "${unittest_bin}.tmp" ./cmd/helm-unittest)
    mv "${unittest_bin}.tmp" "${unittest_bin}"
    rm -rf "${work}"
    log "helm-unittest built in $(( $(date +%s) - start ))s"
fi
ln -sfn "$(basename "${unittest_bin}")" "${BIN}/helm-unittest"

echo "${BIN}"
