#!/usr/bin/env bash
# Installs the Debian packages llmap needs to build and test, when they are missing.
# As root it runs apt-get itself; otherwise it prints the one command to run.
set -eu
PKGS="build-essential pkg-config clang libclang-rt-14-dev libmicrohttpd-dev libcjson-dev
      libcurl4-openssl-dev libpcre2-dev libutf8proc-dev libedit-dev libssl-dev
      nodejs npm tmux python3 docker-registry curl chromium"
missing=()
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere (nvm, NodeSource): accept working commands instead.
filtered=()
for p in "${missing[@]:-}"; do
    case "$p" in
        nodejs) command -v node >/dev/null && continue;;
        npm) command -v npm >/dev/null && continue;;
        "") continue;;
    esac
    filtered+=("$p")
done
[ ${#filtered[@]} -eq 0 ] && exit 0
echo "llmap: installing missing packages: ${filtered[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "llmap: not root; run:  sudo apt-get install -y ${filtered[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${filtered[@]}" \
    || { apt-get update && apt-get install -y --no-install-recommends "${filtered[@]}"; }
