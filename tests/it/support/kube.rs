//! A Kubernetes API server replica, in process, for the `kubernetes`
//! source's tests: no real API server can be installed on this machine.
//!
//! It implements the documented protocol the source uses
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/>):
//! - list (`GET` on a collection) with `labelSelector`, `fieldSelector`
//!   (equality), `limit` and `continue`, answering the list's
//!   `resourceVersion`; a `continue` token older than the compaction point
//!   is `410 Gone`;
//! - watch (`?watch=true&resourceVersion=N`): a chunked stream of
//!   `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}` lines,
//!   every change after `N` then live ones, `BOOKMARK`s when asked for
//!   (`allowWatchBookmarks`), closed after `timeoutSeconds`; a version older
//!   than the compaction point gets an `ERROR` event with a `410` Status;
//! - `GET` of one object, discovery (`/api/v1`, `/apis/GROUP/VERSION`) for
//!   the kinds it serves, bearer-token authentication (`401` Status).
//!
//! One global `resourceVersion` counter, as etcd's revision. Pages of a
//! list are cut from the current objects (a real server serves later
//! pages from the first page's snapshot).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The kinds served: (group/version, plural, kind, namespaced).
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("v1", "events", "Event", true),
    ("v1", "pods", "Pod", true),
    ("v1", "nodes", "Node", false),
    ("apps/v1", "deployments", "Deployment", true),
    (
        "healthevents.dgxc.nvidia.com/v1",
        "healtheventresources",
        "HealthEventResource",
        true,
    ),
];

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    ty: &'static str,
    plural: String,
    object: Value,
}

struct Cluster {
    rv: u64,
    /// By (plural, namespace, name).
    objects: BTreeMap<(String, String, String), Value>,
    history: Vec<Change>,
    /// Versions at or below this are gone (etcd compaction).
    compacted: u64,
    /// Requests seen: (method-ish kind, path), e.g. ("list", "/api/v1/events").
    requests: Vec<(String, String)>,
    uid: u64,
}

#[derive(Clone)]
struct Shared {
    cluster: Arc<Mutex<Cluster>>,
    changes: broadcast::Sender<Change>,
    /// Closes every open watch when sent.
    hangup: broadcast::Sender<()>,
    token: String,
    bookmark_every: Duration,
}

pub struct ApiServer {
    shared: Shared,
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// Serves on 127.0.0.1:0 (or on `addr` to come back on the same port).
    pub async fn start(token: &str, addr: Option<std::net::SocketAddr>) -> Self {
        let shared = Shared {
            cluster: Arc::new(Mutex::new(Cluster {
                rv: 100,
                objects: BTreeMap::new(),
                history: Vec::new(),
                compacted: 0,
                requests: Vec::new(),
                uid: 0,
            })),
            changes: broadcast::channel(100_000).0,
            hangup: broadcast::channel(4).0,
            token: token.to_owned(),
            bookmark_every: Duration::from_millis(300),
        };
        Self::serve(shared, addr).await
    }

    async fn serve(shared: Shared, addr: Option<std::net::SocketAddr>) -> Self {
        let listener = tokio::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { shared, addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server in `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path, token: &str) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: replica\n  cluster:\n    server: {}\nusers:\n- name: tester\n  user:\n    token: {token}\ncontexts:\n- name: replica\n  context:\n    cluster: replica\n    user: tester\ncurrent-context: replica\n",
                self.url()
            ),
        )
        .unwrap();
        path
    }

    /// Creates an object of `plural` (uid, resourceVersion and
    /// creationTimestamp filled in); returns it.
    pub fn create(&self, plural: &str, mut object: Value) -> Value {
        let mut c = self.shared.cluster.lock().unwrap();
        c.rv += 1;
        c.uid += 1;
        let (rv, uid) = (c.rv, c.uid);
        let meta = object["metadata"].as_object_mut().expect("metadata");
        meta.entry("uid")
            .or_insert_with(|| format!("uid-{plural}-{uid}").into());
        meta.insert("resourceVersion".into(), rv.to_string().into());
        meta.entry("creationTimestamp").or_insert_with(|| {
            chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
                .into()
        });
        let key = key_of(plural, &object);
        c.objects.insert(key, object.clone());
        self.record(&mut c, rv, "ADDED", plural, &object);
        object
    }

    /// Changes an object; returns it.
    pub fn update(&self, plural: &str, ns: &str, name: &str, f: impl FnOnce(&mut Value)) -> Value {
        let mut c = self.shared.cluster.lock().unwrap();
        c.rv += 1;
        let rv = c.rv;
        let key = (plural.to_owned(), ns.to_owned(), name.to_owned());
        let object = c.objects.get_mut(&key).expect("object exists");
        f(object);
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        let object = object.clone();
        self.record(&mut c, rv, "MODIFIED", plural, &object);
        object
    }

    pub fn delete(&self, plural: &str, ns: &str, name: &str) {
        let mut c = self.shared.cluster.lock().unwrap();
        c.rv += 1;
        let rv = c.rv;
        let key = (plural.to_owned(), ns.to_owned(), name.to_owned());
        let mut object = c.objects.remove(&key).expect("object exists");
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.record(&mut c, rv, "DELETED", plural, &object);
    }

    fn record(&self, c: &mut Cluster, rv: u64, ty: &'static str, plural: &str, object: &Value) {
        let change = Change {
            rv,
            ty,
            plural: plural.to_owned(),
            object: object.clone(),
        };
        c.history.push(change.clone());
        let _ = self.shared.changes.send(change);
    }

    /// Forgets history up to now (etcd compaction): watching from an older
    /// version is `410 Gone`.
    pub fn compact(&self) {
        let mut c = self.shared.cluster.lock().unwrap();
        c.compacted = c.rv;
        let compacted = c.compacted;
        c.history.retain(|h| h.rv > compacted);
    }

    /// Ends every open watch (as an API server restart or a load balancer
    /// timeout does); clients watch again.
    pub fn hang_up(&self) {
        let _ = self.shared.hangup.send(());
    }

    /// Every request served, for failure messages.
    pub fn request_log(&self) -> String {
        let c = self.shared.cluster.lock().unwrap();
        c.requests
            .iter()
            .map(|(k, p)| format!("{k} {p}\n"))
            .collect()
    }

    /// How many requests of `kind` (`list`, `watch`, `get`, `discovery`,
    /// `refused`: answered 401) were answered.
    pub fn requests(&self, kind: &str) -> usize {
        let c = self.shared.cluster.lock().unwrap();
        c.requests.iter().filter(|(k, _)| k == kind).count()
    }
}

fn key_of(plural: &str, object: &Value) -> (String, String, String) {
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (
        plural.to_owned(),
        text("/metadata/namespace"),
        text("/metadata/name"),
    )
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

fn reply(code: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What a path names.
enum Target {
    Discovery(String),
    Collection {
        group_version: String,
        plural: String,
        namespace: Option<String>,
    },
    Object {
        plural: String,
        namespace: String,
        name: String,
    },
}

fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    Some(match rest {
        [] => Target::Discovery(gv),
        ["namespaces", ns, plural] => Target::Collection {
            group_version: gv,
            plural: plural.to_string(),
            namespace: Some(ns.to_string()),
        },
        ["namespaces", ns, plural, name] => Target::Object {
            plural: plural.to_string(),
            namespace: ns.to_string(),
            name: name.to_string(),
        },
        [plural] => Target::Collection {
            group_version: gv,
            plural: plural.to_string(),
            namespace: None,
        },
        [plural, name] => Target::Object {
            plural: plural.to_string(),
            namespace: String::new(),
            name: name.to_string(),
        },
        _ => return None,
    })
}

async fn handle(State(s): State<Shared>, req: Request) -> Response {
    let authorised = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", s.token));
    if !authorised {
        let path = req.uri().path().to_owned();
        s.cluster
            .lock()
            .unwrap()
            .requests
            .push(("refused".into(), path));
        return reply(401, status(401, "Unauthorized", "Unauthorized"));
    }
    let path = req.uri().path().to_owned();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let Some(target) = parse(&path) else {
        return reply(
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    };
    match target {
        Target::Discovery(gv) => {
            s.cluster
                .lock()
                .unwrap()
                .requests
                .push(("discovery".into(), path));
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.0 == gv)
                .map(|(_, plural, kind, namespaced)| {
                    json!({"name": plural, "singularName": "", "namespaced": namespaced,
                        "kind": kind, "verbs": ["get", "list", "watch"]})
                })
                .collect();
            if resources.is_empty() {
                return reply(
                    404,
                    status(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    ),
                );
            }
            reply(
                200,
                json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": gv, "resources": resources}),
            )
        }
        Target::Object {
            plural,
            namespace,
            name,
        } => {
            let mut c = s.cluster.lock().unwrap();
            c.requests.push(("get".into(), path));
            match c.objects.get(&(plural.clone(), namespace, name.clone())) {
                Some(o) => reply(200, o.clone()),
                None => reply(
                    404,
                    status(404, "NotFound", &format!("{plural} \"{name}\" not found")),
                ),
            }
        }
        Target::Collection {
            group_version,
            plural,
            namespace,
        } => {
            let Some(&(_, _, kind, _)) = RESOURCES
                .iter()
                .find(|r| r.0 == group_version && r.1 == plural)
            else {
                return reply(
                    404,
                    status(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    ),
                );
            };
            let filter = Filter::new(&query, namespace);
            if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
                watch(s, path, plural, kind, group_version, filter, &query)
            } else {
                list(&s, path, &plural, kind, &group_version, &filter, &query)
            }
        }
    }
}

/// Namespace, label and field selectors (equality and inequality).
struct Filter {
    namespace: Option<String>,
    labels: Vec<(String, String, bool)>,
    fields: Vec<(String, String, bool)>,
}

fn terms(s: Option<&String>) -> Vec<(String, String, bool)> {
    s.map(|s| {
        s.split(',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                if let Some((k, v)) = t.split_once("!=") {
                    (k.to_owned(), v.to_owned(), false)
                } else {
                    let (k, v) = t
                        .split_once("==")
                        .or_else(|| t.split_once('='))
                        .expect("k=v");
                    (k.to_owned(), v.to_owned(), true)
                }
            })
            .collect()
    })
    .unwrap_or_default()
}

impl Filter {
    fn new(query: &BTreeMap<String, String>, namespace: Option<String>) -> Self {
        Self {
            namespace,
            labels: terms(query.get("labelSelector")),
            fields: terms(query.get("fieldSelector")),
        }
    }

    fn matches(&self, o: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && o.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns)
        {
            return false;
        }
        let labels_ok = self.labels.iter().all(|(k, v, eq)| {
            let got = o
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str);
            (got == Some(v.as_str())) == *eq
        });
        let fields_ok = self.fields.iter().all(|(k, v, eq)| {
            let pointer = format!("/{}", k.replace('.', "/"));
            let got = match o.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *v) == *eq
        });
        labels_ok && fields_ok
    }
}

fn list(
    s: &Shared,
    path: String,
    plural: &str,
    kind: &str,
    group_version: &str,
    filter: &Filter,
    query: &BTreeMap<String, String>,
) -> Response {
    let mut c = s.cluster.lock().unwrap();
    c.requests.push(("list".into(), path));
    let (rv, offset) = match query.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => {
            let (rv, offset) = token.split_once(':').expect("our token");
            let (rv, offset): (u64, usize) = (rv.parse().unwrap(), offset.parse().unwrap());
            if rv < c.compacted {
                return reply(
                    410,
                    status(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                );
            }
            (rv, offset)
        }
        None => (c.rv, 0),
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let matching = || {
        c.objects
            .iter()
            .filter(|((p, _, _), o)| p == plural && filter.matches(o))
            .map(|(_, o)| o)
    };
    let total = matching().count();
    let page: Vec<Value> = matching()
        .skip(offset)
        .take(limit)
        .map(|o| {
            // List items carry no kind/apiVersion, as a real server's.
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    let end = offset.saturating_add(page.len());
    let items = vec![(); total];
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if end < items.len() {
        metadata["continue"] = format!("{rv}:{end}").into();
        metadata["remainingItemCount"] = (items.len() - end).into();
    }
    reply(
        200,
        json!({"kind": format!("{kind}List"), "apiVersion": group_version,
        "metadata": metadata, "items": page}),
    )
}

fn watch(
    s: Shared,
    path: String,
    plural: String,
    kind: &str,
    group_version: String,
    filter: Filter,
    query: &BTreeMap<String, String>,
) -> Response {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1800),
    );
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let mut live = s.changes.subscribe();
    let mut hangup = s.hangup.subscribe();
    let (backlog, expired, now) = {
        let mut c = s.cluster.lock().unwrap();
        let compacted = c.compacted;
        c.requests.push((
            "watch".into(),
            format!("{path}?from={from} compacted={compacted}"),
        ));
        let expired = from < c.compacted;
        let backlog: Vec<Change> = c
            .history
            .iter()
            .filter(|h| h.rv > from && h.plural == plural)
            .cloned()
            .collect();
        (backlog, expired, c.rv)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    let kind = kind.to_owned();
    let bookmark_every = s.bookmark_every;
    tokio::spawn(async move {
        let line = |v: Value| Ok(format!("{v}\n"));
        if expired {
            let message = format!("too old resource version: {from} ({now})");
            let _ = tx
                .send(line(
                    json!({"type": "ERROR", "object": status(410, "Expired", &message)}),
                ))
                .await;
            return;
        }
        let mut last = from;
        let event = |c: &Change| {
            let mut o = c.object.clone();
            o["kind"] = kind.clone().into();
            o["apiVersion"] = group_version.clone().into();
            json!({"type": c.ty, "object": o})
        };
        for c in &backlog {
            last = c.rv;
            if filter.matches(&c.object) && tx.send(line(event(c))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval(bookmark_every);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = hangup.recv() => return,
                _ = ticks.tick(), if bookmarks => {
                    // Everything up to `last` was sent (or filtered out).
                    let b = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": group_version,
                        "metadata": {"resourceVersion": last.to_string()}}});
                    if tx.send(line(b)).await.is_err() { return; }
                }
                c = live.recv() => {
                    let Ok(c) = c else { return };
                    if c.rv <= last || c.plural != plural { continue; }
                    last = c.rv;
                    if filter.matches(&c.object) && tx.send(line(event(&c))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::from_stream(stream))
        .unwrap()
}
