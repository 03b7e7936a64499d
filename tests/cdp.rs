//! A small client of the Chrome DevTools Protocol over `--remote-debugging-pipe` (JSON
//! messages ending in a NUL byte: commands on the browser's fd 3, answers and events on its
//! fd 4), driving Debian's headless Chromium for tests/report.rs. Every event is kept, so a
//! test can look at console messages, exceptions and network requests afterwards.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// How long one command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The browser (`KILN_CHROMIUM`, else Debian's `chromium` on the PATH).
pub fn chromium() -> String {
    std::env::var("KILN_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

pub struct Browser {
    child: Child,
    to_browser: File,
    from_browser: Receiver<Value>,
    next_id: u64,
    /// Every event received, in order.
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

/// Two pipes with close-on-exec set: (read, write).
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is two ints, as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Browser {
    /// Starts headless Chromium with a fresh profile. Fails (never skips) when it cannot:
    /// the tests use the real browser.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (browser_reads, we_write) = pipe();
        let (we_read, browser_writes) = pipe();
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends above 10 first, so neither is overwritten by the other's dup2.
                let r = libc::fcntl(browser_reads, libc::F_DUPFD, 10);
                let w = libc::fcntl(browser_writes, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start `{}` ({e}): Chromium is required (scripts/setup installs Debian's \
                 `chromium` package; KILN_CHROMIUM names another binary)",
                chromium()
            )
        });
        // SAFETY: the parent's copies of the browser's ends are ours to close; the other two
        // are owned by the Files below from here on.
        unsafe {
            libc::close(browser_reads);
            libc::close(browser_writes);
        }
        let to_browser = unsafe { File::from_raw_fd(we_write) };
        let from = unsafe { File::from_raw_fd(we_read) };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
                            break;
                        };
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to_browser,
            from_browser: rx,
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        }
    }

    /// Sends a command (to a page's `session`, or the browser) and returns its result; an
    /// error answer fails the test.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("cannot send {method} to Chromium: {e}"));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to {method} from Chromium: {e}"));
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method} failed: {err}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Waits for an event named `method` (of `session`) received after `since` events.
    pub fn wait_for(&mut self, session: &str, method: &str, since: usize) -> Value {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if let Some(e) = self.events[since..]
                .iter()
                .find(|e| e["method"] == method && e["sessionId"] == session)
            {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {method} event from Chromium: {e}"));
            self.events.push(v);
        }
    }

    /// Collects events for `quiet` more (late console messages or requests).
    pub fn drain(&mut self, quiet: Duration) {
        while let Ok(v) = self.from_browser.recv_timeout(quiet) {
            self.events.push(v);
        }
    }

    /// A new page with the Page, Runtime, Log and Network domains on, `width` CSS pixels
    /// wide: its session id.
    pub fn page(&mut self, width: u32, height: u32) -> String {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(Some(&session), &format!("{domain}.enable"), json!({}));
        }
        self.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        session
    }

    /// Opens `file` in the page and waits for its load event; returns the URL.
    pub fn open(&mut self, session: &str, file: &Path) -> String {
        let url = format!("file://{}", file.canonicalize().unwrap().display());
        let since = self.events.len();
        self.call(Some(session), "Page.navigate", json!({ "url": url }));
        self.wait_for(session, "Page.loadEventFired", since);
        url
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    pub fn eval(&mut self, session: &str, expression: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// A PNG of `clip` (CSS pixels) at `scale`.
    pub fn screenshot(&mut self, session: &str, clip: [f64; 4], scale: f64) -> Vec<u8> {
        let r = self.call(
            Some(session),
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": clip[0], "y": clip[1], "width": clip[2], "height": clip[3], "scale": scale }
            }),
        );
        base64(r["data"].as_str().expect("screenshot data"))
    }

    /// Console calls, exceptions and error or warning log entries of `session` since event
    /// `since`.
    pub fn complaints(&self, session: &str, since: usize) -> Vec<Value> {
        self.events[since..]
            .iter()
            .filter(|e| e["sessionId"] == session)
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.consoleAPICalled") | Some("Runtime.exceptionThrown") => true,
                Some("Log.entryAdded") => {
                    matches!(
                        e["params"]["entry"]["level"].as_str(),
                        Some("error" | "warning")
                    )
                }
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// The URL of every request `session` made since event `since`.
    pub fn requests(&self, session: &str, since: usize) -> Vec<String> {
        self.events[since..]
            .iter()
            .filter(|e| e["sessionId"] == session && e["method"] == "Network.requestWillBeSent")
            .map(|e| {
                e["params"]["request"]["url"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (RFC 4648 §4) to bytes.
pub fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}
