//! The world of the app tests: a project folder the CLI runs in, app names taken down at
//! teardown, and the app's status from the daemon's API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{tail, World};

impl World {
    /// The app world of host_apps.rs (temp dir `apps-TAG-PID-…`); `slot` (0-7) gives each
    /// test its own link prefix letter and /19 of 10.217.0.0/16.
    pub fn app(tag: &str, slot: u8) -> World {
        World::builder(&format!("apps-{tag}"))
            .network("app", 217, slot)
            .project()
            .build()
    }

    /// The project folder the CLI runs in.
    pub fn project(&self) -> &Path {
        self.project
            .as_deref()
            .expect("a world made with the `project` option")
    }

    /// Write `text` to file `name` of the project folder; its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.project().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A unique app name for this test, taken down at teardown.
    pub fn app_name(&self, tag: &str) -> String {
        let n = format!("apps{}{tag}", std::process::id());
        self.apps.borrow_mut().push(n.clone());
        n
    }

    /// The app's status from the daemon's API (`GET /v1/apps/NAME` on its socket); null when
    /// there is no such app.
    pub fn status(&self, app: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.run.join("corral.sock"))
        else {
            return serde_json::Value::Null;
        };
        let req = format!("GET /v1/apps/{app} HTTP/1.0\r\nHost: corral\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        if !text.starts_with("HTTP/1.0 200") && !text.starts_with("HTTP/1.1 200") {
            return serde_json::Value::Null;
        }
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("null");
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    /// Wait (up to 60 s) until `f` holds for the app's status.
    pub fn wait_for(
        &self,
        app: &str,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let st = self.status(app);
            if f(&st) {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; last status: {st:#}\n--- daemon log (end) ---\n{}",
                tail(&self.daemon_log(), 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
