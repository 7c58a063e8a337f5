# shellcheck shell=bash
# The JavaScript plugin toolchain: @bytecodealliance/componentize-js (npm),
# pinned by plugins/toolchain/js/package-lock.json, installed under
# .cache/plugin-tools/js of the checkout.
#
#   source plugins/toolchain/js.sh   install it if missing, export COMPONENTIZE_JS
#                                    (and put a new enough node first on PATH)
#   plugins/toolchain/js.sh          the same, then print the command's path
#
# Needs node and npm (Debian: apt-get install nodejs npm). componentize-js
# needs Node.js >= 20: its native parser packages declare it, and npm skips
# them on an older node. When the node on PATH is older (Debian 12 has 18),
# the pinned Node.js below is installed from the npm registry (package
# node-linux-<arch>, the official binaries) into .cache/plugin-tools/node
# and used for the install and the builds.
#
# `npm install` with the lock file, not `npm ci`: npm leaves other platforms'
# optional native packages out of the lock (npm/cli#4828, #8320) and `npm ci`
# then refuses it as out of sync. `npm install` keeps every locked version.
#
# $SWITCHYARD_PLUGIN_TOOLS overrides .cache/plugin-tools. Idempotent and
# silent when everything is in place.

node_fallback_version=22.23.3

_switchyard_js_toolchain() {
  local root spec tools dir bin major arch nodebin npm_cmd
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
  spec=$root/plugins/toolchain/js
  tools=${SWITCHYARD_PLUGIN_TOOLS:-$root/.cache/plugin-tools}
  dir=$tools/js
  bin=$dir/node_modules/.bin/componentize-js

  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "js.sh: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
    return 1
  fi
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || major=0
  if [ "$major" -lt 20 ]; then
    arch=$(node -p 'process.arch') || return 1
    case $arch in
      x64 | arm64) ;;
      *) echo "js.sh: node $(node --version) is too old and there is no fallback for $arch" >&2; return 1 ;;
    esac
    nodebin=$tools/node/node_modules/node-linux-$arch/bin
    if [ "$("$nodebin/node" --version 2>/dev/null)" != "v$node_fallback_version" ]; then
      echo "js.sh: node $(node --version) is older than 20; installing Node.js $node_fallback_version into $tools/node" >&2
      rm -rf "$tools/node"
      mkdir -p "$tools/node"
      npm install --prefix "$tools/node" --no-save --no-audit --no-fund --loglevel=error \
        "node-linux-$arch@$node_fallback_version" >&2 || return 1
    fi
    export PATH="$nodebin:$PATH"
  fi
  # npm decides which optional native packages to install by the node it
  # runs on, so run its script with the node chosen above (a #!/usr/bin/node
  # line would pick the old one).
  npm_cmd=(npm)
  if head -n1 "$(readlink -f "$(command -v npm)")" 2>/dev/null | grep -q node; then
    npm_cmd=(node "$(readlink -f "$(command -v npm)")")
  fi

  # The stamp is the lock file that the last successful install installed.
  if ! [ -x "$bin" ] || ! cmp -s "$spec/package-lock.json" "$dir/.installed-lock.json"; then
    echo "installing componentize-js (plugins/toolchain/js/package-lock.json) into $dir" >&2
    mkdir -p "$dir"
    rm -f "$dir/.installed-lock.json"
    cp "$spec/package.json" "$spec/package-lock.json" "$dir/"
    (cd "$dir" && "${npm_cmd[@]}" install --no-save --no-audit --no-fund --loglevel=error >&2) || return 1
    cp "$spec/package-lock.json" "$dir/.installed-lock.json"
  fi
  export COMPONENTIZE_JS=$bin
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  _switchyard_js_toolchain
  echo "$COMPONENTIZE_JS"
else
  _switchyard_js_toolchain
fi
