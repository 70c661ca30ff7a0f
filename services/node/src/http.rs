//! The operator's HTTP endpoint: `GET /health`, `GET /metrics` (Prometheus text format),
//! `GET /members` (every shard's configuration) and membership changes:
//! `POST /members/add-learner/ID`, `POST /members/add-voter/ID` (promotes a learner, or adds a
//! voter directly) and `POST /members/remove/ID`, made on every shard this node leads.
//!
//! A few fixed pages without bodies do not need a general HTTP stack: requests are read up to the
//! end of their headers (bounded), answered, and the connection is closed. Anything else gets a
//! 404, a malformed or oversized request a 400.
//!
//! With a password (the node's `--requirepass`), a membership change must carry
//! `Authorization: Bearer PASSWORD`, or it is answered 401 and nothing changes. (A header a
//! browser page cannot add to a cross-site request without asking first.) The read-only pages
//! stay open.

use std::future::Future;
use std::rc::Rc;
use strata_rt::{Duration, NodeId, Runtime};
use strata_rt::{Listener, Stream};

/// The request line and headers of one request, at most.
const REQUEST_BYTES_MAX: usize = 8 << 10;
/// Connections served at once, at most; more wait in the kernel's accept queue.
const CONNECTIONS_MAX: usize = 64;
/// A client that sends no complete request in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A membership change an operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    AddLearner(NodeId),
    /// Promotes a learner, or adds a voter directly.
    AddVoter(NodeId),
    Remove(NodeId),
}

/// What the pages show, computed when asked.
pub trait Pages: 'static {
    /// `None` when healthy, or why not.
    fn unhealthy(&self) -> Option<String>;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
    /// Every shard's configuration, one line each.
    fn members(&self) -> String;
    /// Makes `change` on every shard; `Err` (with every shard's outcome) unless all took it.
    fn change_members(&self, change: MemberChange) -> impl Future<Output = Result<String, String>>;
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Health,
    Metrics,
    Members,
    Change(MemberChange),
    Unauthorized,
    NotFound,
    BadRequest,
}

/// Serves until the task is dropped.
pub async fn serve<P: Pages>(
    rt: Runtime,
    listener: Listener,
    pages: Rc<P>,
    password: Option<String>,
) {
    let password: Rc<Option<String>> = Rc::new(password);
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            rt.sleep(Duration::from_millis(10)).await;
            continue;
        };
        if open.get() >= CONNECTIONS_MAX {
            continue; // Dropping the stream closes it.
        }
        open.set(open.get() + 1);
        let (rt_task, pages, open) = (rt.clone(), pages.clone(), open.clone());
        let password = password.clone();
        drop(rt.spawn(async move {
            let request = rt_task.timeout(REQUEST_TIMEOUT, read_request(&stream)).await;
            if let Ok(Some(request)) = request {
                let route = authorize(route(&request), &request, password.as_deref());
                let response = respond(route, &*pages).await;
                let _ = stream.write_all(response).await;
            }
            let _ = stream.shutdown().await;
            open.set(open.get() - 1);
        }));
    }
}

/// Reads until the blank line that ends the headers; `None` if the peer closed or sent too much.
async fn read_request(stream: &Stream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    loop {
        let (result, buffer) = stream.read(vec![0; 1024]).await;
        let read = result.ok().filter(|&read| read > 0)?;
        request.extend_from_slice(&buffer[..read]);
        if request.windows(4).any(|window| window == b"\r\n\r\n") {
            return Some(request);
        }
        if request.len() > REQUEST_BYTES_MAX {
            return Some(Vec::new()); // Answered with a 400.
        }
    }
}

fn route(request: &[u8]) -> Route {
    let line = request.split(|&byte| byte == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/health") => Route::Health,
        ("GET", "/metrics") => Route::Metrics,
        ("GET", "/members") => Route::Members,
        ("POST", path) => match member_change(path) {
            Some(change) => Route::Change(change),
            None => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// Fuzz target body (`fuzz/fuzz_targets/http_request.rs`): routing any request head never
/// panics, and a membership change only comes from a POST.
pub fn fuzz_route(request: &[u8]) {
    if let Route::Change(_) = route(request) {
        assert!(request.starts_with(b"POST "), "a change from {request:?}");
    }
}

/// A membership change without the password (when there is one) becomes `Unauthorized`.
fn authorize(route: Route, request: &[u8], password: Option<&str>) -> Route {
    let (Route::Change(_), Some(password)) = (&route, password) else { return route };
    let expected = format!("Bearer {password}");
    let given = String::from_utf8_lossy(request);
    let authorized = given.split("\r\n").skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("authorization") && value.trim() == expected
        })
    });
    if authorized {
        route
    } else {
        Route::Unauthorized
    }
}

/// `/members/add-learner/4` and the like.
fn member_change(path: &str) -> Option<MemberChange> {
    let rest = path.strip_prefix("/members/")?;
    let (action, id) = rest.split_once('/')?;
    let id = NodeId(id.parse().ok()?);
    match action {
        "add-learner" => Some(MemberChange::AddLearner(id)),
        "add-voter" => Some(MemberChange::AddVoter(id)),
        "remove" => Some(MemberChange::Remove(id)),
        _ => None,
    }
}

async fn respond(route: Route, pages: &impl Pages) -> Vec<u8> {
    let text = "text/plain";
    match route {
        Route::Health => match pages.unhealthy() {
            None => response("200 OK", text, "ok\n"),
            Some(reason) => response("503 Service Unavailable", text, &format!("{reason}\n")),
        },
        Route::Metrics => response("200 OK", "text/plain; version=0.0.4", &pages.metrics()),
        Route::Members => response("200 OK", text, &pages.members()),
        Route::Change(change) => match pages.change_members(change).await {
            Ok(outcome) => response("200 OK", text, &outcome),
            Err(outcome) => response("409 Conflict", text, &outcome),
        },
        Route::Unauthorized => response(
            "401 Unauthorized\r\nWWW-Authenticate: Bearer",
            text,
            "membership changes need Authorization: Bearer PASSWORD (--requirepass)\n",
        ),
        Route::NotFound => response(
            "404 Not Found",
            text,
            "try GET /health, /metrics or /members, or POST /members/{add-learner,add-voter,remove}/ID\n",
        ),
        Route::BadRequest => response("400 Bad Request", text, "bad request\n"),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Appends one metric in the Prometheus text format.
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Option<String>);

    impl Pages for Fixed {
        fn unhealthy(&self) -> Option<String> {
            self.0.clone()
        }

        fn metrics(&self) -> String {
            let mut out = String::new();
            metric(&mut out, "strata_up", "gauge", "Whether the node runs.", &[(String::new(), 1)]);
            out
        }

        fn members(&self) -> String {
            "shard 0: voters 1\n".into()
        }

        async fn change_members(&self, change: MemberChange) -> Result<String, String> {
            match change {
                MemberChange::AddLearner(id) => Ok(format!("added {id}\n")),
                _ => Err("refused\n".into()),
            }
        }
    }

    /// The fixed pages never wait: one poll answers.
    fn answer(request: &str, pages: &Fixed) -> String {
        let future = std::pin::pin!(respond(route(request.as_bytes()), pages));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.poll(&mut context) {
            std::task::Poll::Ready(response) => String::from_utf8(response).unwrap(),
            std::task::Poll::Pending => panic!("a fixed page waited"),
        }
    }

    #[test]
    fn pages_answer_with_their_status() {
        let healthy = Fixed(None);
        assert!(answer("GET /health HTTP/1.1\r\n\r\n", &healthy).starts_with("HTTP/1.1 200"));
        let metrics = answer("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &healthy);
        assert!(metrics.contains("# TYPE strata_up gauge\nstrata_up 1\n"), "{metrics}");
        let sick = Fixed(Some("storage failed".into()));
        assert!(answer("GET /health HTTP/1.1\r\n\r\n", &sick).starts_with("HTTP/1.1 503"));
        assert!(answer("GET /nope HTTP/1.1\r\n\r\n", &healthy).starts_with("HTTP/1.1 404"));
        assert!(answer("garbage\r\n\r\n", &healthy).starts_with("HTTP/1.1 400"));
        assert!(answer("", &healthy).starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn membership_changes_are_posted_to_their_path() {
        let pages = Fixed(None);
        assert!(answer("GET /members HTTP/1.1\r\n\r\n", &pages).ends_with("voters 1\n"));
        let added = answer("POST /members/add-learner/4 HTTP/1.1\r\n\r\n", &pages);
        assert!(added.starts_with("HTTP/1.1 200") && added.ends_with("added n4\n"), "{added}");
        let refused = answer("POST /members/remove/4 HTTP/1.1\r\n\r\n", &pages);
        assert!(refused.starts_with("HTTP/1.1 409"), "{refused}");
        assert_eq!(route(b"POST /members/add-voter/x HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /members/remove/4 HTTP/1.1\r\n\r\n"), Route::NotFound);
        for odd in [
            &b"\xff\xfe POST"[..],
            b"POST /members// HTTP/1.1",
            b"POST /members/remove/99999999999 HTTP/1.1",
        ] {
            fuzz_route(odd);
            assert_ne!(route(odd), Route::Change(MemberChange::Remove(NodeId(0))));
        }
        let promote = route(b"POST /members/add-voter/7 HTTP/1.1\r\n\r\n");
        assert_eq!(promote, Route::Change(MemberChange::AddVoter(NodeId(7))));
    }

    #[test]
    fn with_a_password_only_an_authorized_post_changes_members() {
        let pages = Fixed(None);
        let ask = |request: &str, password| {
            let routed = authorize(route(request.as_bytes()), request.as_bytes(), password);
            let future = std::pin::pin!(respond(routed, &pages));
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            match future.poll(&mut context) {
                std::task::Poll::Ready(response) => String::from_utf8(response).unwrap(),
                std::task::Poll::Pending => panic!("a fixed page waited"),
            }
        };
        let bare = "POST /members/add-learner/4 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(ask(bare, None).starts_with("HTTP/1.1 200"));
        let refused = ask(bare, Some("secret"));
        assert!(refused.starts_with("HTTP/1.1 401") && refused.contains("WWW-Authenticate"));
        let wrong = "POST /members/add-learner/4 HTTP/1.1\r\nAuthorization: Bearer guess\r\n\r\n";
        assert!(ask(wrong, Some("secret")).starts_with("HTTP/1.1 401"));
        let right = "POST /members/add-learner/4 HTTP/1.1\r\nauthorization:  Bearer secret\r\n\r\n";
        assert!(
            ask(right, Some("secret")).starts_with("HTTP/1.1 200"),
            "{}",
            ask(right, Some("secret"))
        );
        // Reading stays open.
        assert!(ask("GET /members HTTP/1.1\r\n\r\n", Some("secret")).starts_with("HTTP/1.1 200"));
    }
}
