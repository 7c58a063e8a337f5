//! The journal and its reader together: group commit, segments, torn
//! tails, positions, deletion behind the persisted position.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::reader::{self, Backlog};
use crate::journal::{self, Append};
use crate::source::{Payload, Position, Record};

async fn append(tx: &mpsc::Sender<Append>, lines: &[&str]) {
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l.as_bytes());
        bytes.push(b'\n');
    }
    let (done, stored) = oneshot::channel();
    tx.send(Append { bytes, done }).await.unwrap();
    stored.await.unwrap().unwrap();
}

async fn next(rx: &mut mpsc::Receiver<Record>) -> (String, u64) {
    let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a record in time")
        .expect("reader running");
    let Payload::Line(line) = r.payload else {
        panic!("a line")
    };
    let Some(Position::Offset { offset, .. }) = r.position else {
        panic!("an offset")
    };
    if let Some(done) = r.done {
        (done.0)();
    }
    (String::from_utf8(line).unwrap(), offset)
}

fn segments(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn journal_rolls_segments_and_the_reader_follows_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let writer = journal::open(dir.path(), 10).unwrap();
    let shared = writer.shared().clone();
    let (tx, rx) = mpsc::channel(16);
    let writer_task = tokio::spawn(writer.run(rx));
    let backlog = std::sync::Arc::new(Backlog::new(0, 100));
    assert!(backlog.reserve(3));
    let (out, mut records) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let reader_task = tokio::spawn(reader::read(
        shared.clone(),
        0,
        out,
        backlog.clone(),
        shutdown.clone(),
    ));

    append(&tx, &["aaaa", "bbbb"]).await; // 10 bytes: a new segment after it
    append(&tx, &["cccc"]).await;
    assert_eq!(next(&mut records).await, ("aaaa".into(), 5));
    assert_eq!(next(&mut records).await, ("bbbb".into(), 10));
    assert_eq!(next(&mut records).await, ("cccc".into(), 15));
    assert_eq!(backlog.queued(), 0, "each finished record frees its place");
    assert_eq!(
        segments(dir.path()),
        ["00000000000000000000.jsonl", "00000000000000000010.jsonl"]
    );
    assert_eq!(shared.count_lines(0, 15).unwrap(), 3);

    // Nothing is deleted before the persisted position passes a segment.
    shared.release_before(9);
    assert_eq!(segments(dir.path()).len(), 2);
    shared.release_before(10);
    assert_eq!(segments(dir.path()), ["00000000000000000010.jsonl"]);
    shared.release_before(1000);
    assert_eq!(segments(dir.path()).len(), 1, "the newest segment stays");

    drop(tx);
    writer_task.await.unwrap();
    shutdown.cancel();
    reader_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_torn_last_line_is_cut_off_when_the_journal_opens() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let writer = journal::open(dir.path(), 1 << 20).unwrap();
        let id = writer.shared().id;
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(writer.run(rx));
        append(&tx, &["one", "two"]).await;
        drop(tx);
        task.await.unwrap();
        id
    };
    // A crash in the middle of a write (never acknowledged).
    let segment = dir.path().join("00000000000000000000.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut f, b"thr").unwrap();

    let writer = journal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(writer.shared().id, id, "the same journal");
    assert_eq!(*writer.shared().durable.borrow(), 8);
    assert_eq!(std::fs::read(&segment).unwrap(), b"one\ntwo\n");
    let shared = writer.shared().clone();
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(writer.run(rx));
    append(&tx, &["three"]).await;
    assert_eq!(std::fs::read(&segment).unwrap(), b"one\ntwo\nthree\n");

    // Resuming after "one": the rest, with their offsets.
    let (out, mut records) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let reader_task = tokio::spawn(reader::read(
        shared,
        4,
        out,
        std::sync::Arc::new(Backlog::new(2, 10)),
        shutdown.clone(),
    ));
    assert_eq!(next(&mut records).await, ("two".into(), 8));
    assert_eq!(next(&mut records).await, ("three".into(), 14));
    drop(tx);
    task.await.unwrap();
    shutdown.cancel();
    reader_task.await.unwrap().unwrap();
}

#[test]
fn the_backlog_refuses_past_its_limit() {
    let backlog = Backlog::new(0, 10);
    assert!(backlog.reserve(25), "an empty backlog takes any request");
    assert!(!backlog.reserve(1));
    backlog.release(20);
    assert!(backlog.reserve(5));
    assert!(!backlog.reserve(1));
    backlog.release(100);
    assert_eq!(backlog.queued(), 0);
}
