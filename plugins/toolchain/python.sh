# shellcheck shell=bash
# The Python plugin toolchain: componentize-py (PyPI) in a venv under
# .cache/plugin-tools/python of the checkout.
#
#   source plugins/toolchain/python.sh   install it if missing, export COMPONENTIZE_PY
#   plugins/toolchain/python.sh          the same, then print the binary's path
#
# $SWITCHYARD_PLUGIN_TOOLS overrides .cache/plugin-tools; $PYTHON the Python
# that creates the venv (default python3; Debian needs the python3-venv
# package). Idempotent and silent when the pinned version is in place.

componentize_py_version=0.25.1

_switchyard_python_toolchain() {
  local root tools venv bin python
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
  tools=${SWITCHYARD_PLUGIN_TOOLS:-$root/.cache/plugin-tools}
  venv=$tools/python
  bin=$venv/bin/componentize-py
  python=${PYTHON:-python3}

  if [ "$("$bin" --version 2>/dev/null)" != "componentize-py $componentize_py_version" ]; then
    echo "installing componentize-py $componentize_py_version into $venv" >&2
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
      rm -rf "$venv"
      mkdir -p "$tools"
      if ! "$python" -m venv "$venv" >&2; then
        echo "python.sh: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        rm -rf "$venv"
        return 1
      fi
    fi
    PIP_ROOT_USER_ACTION=ignore "$venv/bin/python" -m pip install --quiet \
      --disable-pip-version-check --no-input \
      "componentize-py==$componentize_py_version" >&2 || return 1
    if [ "$("$bin" --version 2>/dev/null)" != "componentize-py $componentize_py_version" ]; then
      echo "python.sh: $bin does not report version $componentize_py_version" >&2
      return 1
    fi
  fi
  export COMPONENTIZE_PY=$bin
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  _switchyard_python_toolchain
  echo "$COMPONENTIZE_PY"
else
  _switchyard_python_toolchain
fi
