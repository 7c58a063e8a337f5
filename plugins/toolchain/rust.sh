# shellcheck shell=bash
# The Rust plugin toolchain: wasm32-wasip2 components from the cargo
# workspace plugins/Cargo.toml, built into plugins/target.
#
#   source plugins/toolchain/rust.sh   install it if missing, define switchyard_rust_build
#   plugins/toolchain/rust.sh          the same, then print which toolchain it uses
#   plugins/toolchain/rust.sh build    the same, then build the workspace
#
# Two toolchains work:
#
# - rustup, when `rustup target list --installed` shows wasm32-wasip2:
#   `cargo build --release --target wasm32-wasip2` (stable; rustup ships
#   std for the target and its linker, wasm-component-ld).
# - Otherwise Debian 12's packages (bookworm-security), nothing downloaded
#   but crates: rustc-web and cargo-web (Rust 1.96 as /usr/bin/rustc and
#   /usr/bin/cargo), rust-web-src (std's source: there is no prebuilt std
#   for wasm32-wasip2, so it is built with -Z build-std, which needs
#   RUSTC_BOOTSTRAP=1), lld-22 and wasi-libc (the C library std links,
#   /usr/lib/wasm32-wasi). The linker comes with them: rustc runs
#   /usr/lib/rustlib/<host>/bin/wasm-component-ld (from rust-web-llvm),
#   which runs /usr/bin/rust-lld (lld 22) and adapts the result into a
#   component. No -C linker is needed. /usr/bin is called by full path so
#   that a rustup cargo earlier in PATH is not used.
#
# $SWITCHYARD_RUST=rustup|debian forces one. Installing needs root (or sudo)
# and apt; `apt-get update` runs only if the install fails without it.
# Idempotent and silent when everything is in place.

_switchyard_rust_debian_packages="rustc-web cargo-web rust-web-src lld-22 wasi-libc"

_switchyard_rust_rustup_ready() {
  command -v rustup >/dev/null 2>&1 &&
    (cd "$1" && rustup target list --installed 2>/dev/null) | grep -qx wasm32-wasip2
}

# The Debian files the build needs; prints the first one missing.
_switchyard_rust_debian_missing() {
  local host f
  for f in /usr/bin/rustc /usr/bin/cargo; do
    [ -x "$f" ] || { echo "$f"; return 0; }
  done
  host=$(/usr/bin/rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  for f in /usr/lib/rustlib/src/rust/library/std/Cargo.toml \
    "/usr/lib/rustlib/$host/bin/wasm-component-ld" \
    /usr/bin/rust-lld \
    /usr/lib/wasm32-wasi/libc.a; do
    [ -e "$f" ] || { echo "$f"; return 0; }
  done
  return 1
}

_switchyard_rust_apt() {
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "rust.sh: installing $_switchyard_rust_debian_packages needs root" >&2
      return 1
    fi
  fi
  # shellcheck disable=SC2086
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    $_switchyard_rust_debian_packages >/dev/null; then
    echo "rust.sh: apt-get install failed; running apt-get update and trying again" >&2
    "${sudo[@]}" apt-get update -qq >&2 || return 1
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
      $_switchyard_rust_debian_packages >/dev/null || return 1
  fi
}

_switchyard_rust_toolchain() {
  local root missing
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
  SWITCHYARD_PLUGINS_DIR=$root/plugins

  case ${SWITCHYARD_RUST:-} in
    rustup | debian) ;;
    "")
      if _switchyard_rust_rustup_ready "$SWITCHYARD_PLUGINS_DIR"; then
        SWITCHYARD_RUST=rustup
      else
        SWITCHYARD_RUST=debian
      fi
      ;;
    *)
      echo "rust.sh: SWITCHYARD_RUST is rustup or debian, not '$SWITCHYARD_RUST'" >&2
      return 1
      ;;
  esac

  if [ "$SWITCHYARD_RUST" = rustup ]; then
    if ! _switchyard_rust_rustup_ready "$SWITCHYARD_PLUGINS_DIR"; then
      echo "rust.sh: SWITCHYARD_RUST=rustup, but rustup has no wasm32-wasip2 target" >&2
      return 1
    fi
  elif missing=$(_switchyard_rust_debian_missing); then
    echo "installing $_switchyard_rust_debian_packages (missing: $missing)" >&2
    _switchyard_rust_apt || return 1
    if missing=$(_switchyard_rust_debian_missing); then
      echo "rust.sh: still missing after the install: $missing" >&2
      return 1
    fi
  fi
  export SWITCHYARD_RUST SWITCHYARD_PLUGINS_DIR
}

# Builds every crate of plugins/Cargo.toml for wasm32-wasip2 (release) into
# plugins/target/wasm32-wasip2/release/<crate_name>.wasm. Extra arguments go
# to cargo (e.g. -p bench-noop). RUSTFLAGS from the environment is replaced
# (a change of flags would rebuild std).
switchyard_rust_build() {
  local manifest=$SWITCHYARD_PLUGINS_DIR/Cargo.toml
  local target_dir=$SWITCHYARD_PLUGINS_DIR/target
  if [ "$SWITCHYARD_RUST" = rustup ]; then
    (cd "$SWITCHYARD_PLUGINS_DIR" &&
      RUSTFLAGS= cargo build --quiet --locked --release --target wasm32-wasip2 \
        --manifest-path "$manifest" --target-dir "$target_dir" "$@")
  else
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L native=/usr/lib/wasm32-wasi" \
      /usr/bin/cargo build --quiet --locked --release \
      -Z build-std=std,panic_abort --target wasm32-wasip2 \
      --manifest-path "$manifest" --target-dir "$target_dir" "$@"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  _switchyard_rust_toolchain
  if [ "${1:-}" = build ]; then
    shift
    switchyard_rust_build "$@"
  elif [ "$SWITCHYARD_RUST" = rustup ]; then
    echo "rustup: $(cd "$SWITCHYARD_PLUGINS_DIR" && rustc --version), target wasm32-wasip2"
  else
    echo "debian: $(/usr/bin/rustc --version), -Z build-std for wasm32-wasip2"
  fi
else
  _switchyard_rust_toolchain
fi
