//! The operator's HTTP endpoint: `GET /health` and `GET /metrics` (Prometheus text format).
//!
//! Two fixed, read-only pages do not need a general HTTP stack: requests are read up to the end
//! of their headers (bounded), answered, and the connection is closed. Anything else gets a 404,
//! a malformed or oversized request a 400.

use std::rc::Rc;
use strata_rt::{Duration, Runtime};
use strata_rt::{Listener, Stream};

/// The request line and headers of one request, at most.
const REQUEST_BYTES_MAX: usize = 8 << 10;
/// Connections served at once, at most; more wait in the kernel's accept queue.
const CONNECTIONS_MAX: usize = 64;
/// A client that sends no complete request in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the pages show, computed when asked.
pub trait Pages: 'static {
    /// `None` when healthy, or why not.
    fn unhealthy(&self) -> Option<String>;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
}

/// Serves until the task is dropped.
pub async fn serve<P: Pages>(rt: Runtime, listener: Listener, pages: Rc<P>) {
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
        drop(rt.spawn(async move {
            let request = rt_task.timeout(REQUEST_TIMEOUT, read_request(&stream)).await;
            if let Ok(Some(request)) = request {
                let response = respond(&request, &*pages);
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

fn respond(request: &[u8], pages: &impl Pages) -> Vec<u8> {
    let line = request.split(|&byte| byte == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&byte| byte == b' ');
    let (method, target) = (words.next(), words.next());
    let path = target.map(|target| target.split(|&byte| byte == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/health")) => match pages.unhealthy() {
            None => response("200 OK", "text/plain", "ok\n"),
            Some(reason) => {
                response("503 Service Unavailable", "text/plain", &format!("{reason}\n"))
            }
        },
        (Some(b"GET"), Some(b"/metrics")) => {
            response("200 OK", "text/plain; version=0.0.4", &pages.metrics())
        }
        (Some(_), Some(_)) if words.next().is_some_and(|version| version.starts_with(b"HTTP/")) => {
            response("404 Not Found", "text/plain", "try /health or /metrics\n")
        }
        _ => response("400 Bad Request", "text/plain", "bad request\n"),
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
    }

    fn answer(request: &str, pages: &Fixed) -> String {
        String::from_utf8(respond(request.as_bytes(), pages)).unwrap()
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
}
