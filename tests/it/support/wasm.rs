//! Hostile (and one well-behaved) plugins built in the tests: core modules
//! written in WAT, given the WIT of `wit/switchyard.wit` with
//! `wit-component`, encoded as components. They pass events through
//! unchanged except those whose id starts with one of the `bad` characters,
//! where they misbehave as asked.

use std::path::Path;

/// What a transform does to the events it picks.
#[derive(Debug, Clone, Copy)]
pub enum Misbehaviour {
    /// Loops for ever.
    Loop,
    /// Grows its memory until stopped.
    MemoryBomb,
    /// Executes `unreachable` (a guest panic looks the same).
    Trap,
    /// Returns `err("plugin says no")`.
    Error,
    /// Returns an event whose `application/json` data is not JSON.
    Malformed,
    /// Returns no events (a filter).
    Filter,
    /// Returns the event twice (a split).
    Split,
    /// Returns the event unchanged followed by a malformed one.
    SameThenMalformed,
    /// Grows its memory by 1 MiB and never gives it back, then passes the
    /// event on (a runtime that leaks a little per call).
    Leak,
}

/// The shared part of every test module: memory and a bump allocator.
const PRELUDE: &str = r#"
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 256) "plugin says no")
  (data (i32.const 300) "application/json")
  (data (i32.const 340) "{oops")
  (func $realloc (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
      (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (block $ok
      (br_if $ok (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (drop (memory.grow (i32.add
        (i32.shr_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16))
        (i32.const 1)))))
    (local.get $p))
"#;

/// A check that the first byte of the id (record field 0: ptr, len) is one
/// of `bad`.
fn picks(bad: &str) -> String {
    let mut tests = String::from("(i32.const 0)");
    for b in bad.bytes() {
        tests = format!("(i32.or {tests} (i32.eq (local.get $c) (i32.const {b})))");
    }
    format!(
        r#"
  (func $bad (param $ev i32) (result i32)
    (local $c i32)
    (if (i32.eqz (i32.load offset=4 (local.get $ev))) (then (return (i32.const 0))))
    (local.set $c (i32.load8_u (i32.load (local.get $ev))))
    {tests})
"#
    )
}

/// The return area at 16: `ok([events])`: a list of `n` records at `ptr`.
const OK_LIST: &str = r#"
  (func $ok (param $ptr i32) (param $n i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (local.get $ptr))
    (i32.store (i32.const 24) (local.get $n))
    (i32.const 16))
"#;

fn body(what: Misbehaviour) -> &'static str {
    match what {
        Misbehaviour::Loop => "(loop $l (br $l))",
        Misbehaviour::MemoryBomb => "(loop $l (drop (memory.grow (i32.const 16))) (br $l))",
        Misbehaviour::Trap => "unreachable",
        Misbehaviour::Error => {
            "(i32.store8 (i32.const 16) (i32.const 1))
             (i32.store (i32.const 20) (i32.const 256))
             (i32.store (i32.const 24) (i32.const 14))
             (return (i32.const 16))"
        }
        // A copy of the event (92 bytes) with datacontenttype
        // application/json (record offset 48) and data "{oops" (offset 80).
        Misbehaviour::Malformed => {
            "(memory.copy (i32.const 512) (local.get $ev) (i32.const 92))
             (i32.store8 (i32.const 560) (i32.const 1))
             (i32.store (i32.const 564) (i32.const 300))
             (i32.store (i32.const 568) (i32.const 16))
             (i32.store8 (i32.const 592) (i32.const 1))
             (i32.store (i32.const 596) (i32.const 340))
             (i32.store (i32.const 600) (i32.const 5))
             (return (call $ok (i32.const 512) (i32.const 1)))"
        }
        Misbehaviour::Filter => "(return (call $ok (i32.const 0) (i32.const 0)))",
        Misbehaviour::SameThenMalformed => {
            "(memory.copy (i32.const 1024) (local.get $ev) (i32.const 92))
             (memory.copy (i32.const 1116) (local.get $ev) (i32.const 92))
             (i32.store8 (i32.const 1164) (i32.const 1))
             (i32.store (i32.const 1168) (i32.const 300))
             (i32.store (i32.const 1172) (i32.const 16))
             (i32.store8 (i32.const 1196) (i32.const 1))
             (i32.store (i32.const 1200) (i32.const 340))
             (i32.store (i32.const 1204) (i32.const 5))
             (return (call $ok (i32.const 1024) (i32.const 2)))"
        }
        Misbehaviour::Leak => "(drop (memory.grow (i32.const 16)))",
        // Two copies of the record side by side.
        Misbehaviour::Split => {
            "(memory.copy (i32.const 1024) (local.get $ev) (i32.const 92))
             (memory.copy (i32.const 1116) (local.get $ev) (i32.const 92))
             (return (call $ok (i32.const 1024) (i32.const 2)))"
        }
    }
}

/// A `transform` component that misbehaves on events whose id starts with
/// one of `bad` and passes the others through.
pub fn transform(what: Misbehaviour, bad: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  {PRELUDE}
  {picks}
  {OK_LIST}
  (func (export "transform") (param $ev i32) (result i32)
    (if (call $bad (local.get $ev)) (then {body}))
    (call $ok (local.get $ev) (i32.const 1)))
)"#,
        picks = picks(bad),
        body = body(what),
    );
    component(&wat, "transform", None)
}

/// A `sink` component: `ok` for every batch, or a trap when any event's id
/// starts with one of `bad`.
pub fn sink_trapping_on(bad: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  {PRELUDE}
  {picks}
  (func (export "deliver") (param $ptr i32) (param $n i32) (result i32)
    (local $i i32)
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (call $bad (i32.add (local.get $ptr) (i32.mul (local.get $i) (i32.const 92))))
          (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.const 16))
)"#,
        picks = picks(bad)
    );
    component(&wat, "sink", None)
}

/// A component that imports an interface Switchyard does not provide.
pub fn importing_backdoor() -> Vec<u8> {
    let wit = "package test:evil;\n\
               interface backdoor { open: func(); }\n\
               world evil { import backdoor; export transform: func(); }\n";
    let wat = r#"(module
  (import "test:evil/backdoor" "open" (func $open))
  (memory (export "memory") 1)
  (func (export "transform") (call $open)))"#;
    component(wat, "evil", Some(wit))
}

/// Encodes a core module (WAT) as a component of `world`, from
/// `wit/switchyard.wit` or the given WIT text.
fn component(wat: &str, world: &str, wit: Option<&str>) -> Vec<u8> {
    let mut module = wat::parse_str(wat).unwrap_or_else(|e| panic!("{e}\n{wat}"));
    let mut resolve = wit_parser::Resolve::default();
    let package = match wit {
        None => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
            resolve.push_dir(&dir).unwrap().0
        }
        Some(text) => resolve.push_str("test.wit", text).unwrap(),
    };
    let world = resolve.select_world(&[package], Some(world)).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}
