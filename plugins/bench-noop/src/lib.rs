//! `bench-noop`: a transform that returns its event unchanged, as a
//! one-element list. It measures the cost of a plugin call itself (copying
//! the event into the guest and back), nothing else.

wit_bindgen::generate!({
    path: "../../wit",
    world: "transform",
});

struct Noop;

impl Guest for Noop {
    fn transform(event: CloudEvent) -> Result<Vec<CloudEvent>, String> {
        Ok(vec![event])
    }
}

export!(Noop);
