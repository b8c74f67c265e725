//! A real headless Chromium for the web UI tests, driven over WebDriver (Debian's chromedriver,
//! the fantoccini client): waits that fail with the page's text, and screenshots kept as artifacts.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::free_port;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long the waits without an explicit timeout wait.
pub const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver process with one Chromium session. The API is blocking (the WebDriver calls
/// run on a private runtime), so tests mix it freely with the blocking harness. Dropping it
/// ends the session and kills chromedriver's process group, Chromium included.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session with a fresh
    /// profile.
    pub fn start() -> anyhow::Result<Self> {
        for exe in [CHROMIUM, CHROMEDRIVER] {
            anyhow::ensure!(
                Path::new(exe).exists(),
                "{exe} is missing: run scripts/setup.sh --test (apt packages chromium chromium-driver)"
            );
        }
        let dir = tempfile::tempdir()?;
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile)?;
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Chromium inherits it, and Drop kills the whole group.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut browser = Self {
            rt,
            client: None,
            driver,
            dir,
        };
        let url = format!("http://127.0.0.1:{port}");
        browser.wait_for_driver(&url)?;

        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            // Without these Chromium keeps dialling out, and this machine's closed network
            // refuses its connections.
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        // confirm() and alert() stay open until the test answers them.
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = browser
            .rt
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&url),
            )
            .with_context(|| {
                format!(
                    "opening a Chromium session; chromedriver log:\n{}",
                    browser.driver_log()
                )
            })?;
        browser.client = Some(client);
        Ok(browser)
    }

    fn wait_for_driver(&mut self, url: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = reqwest::blocking::get(format!("{url}/status"))
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return Ok(());
            }
            if let Some(status) = self.driver.try_wait()? {
                bail!(
                    "chromedriver exited ({status}); log:\n{}",
                    self.driver_log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "chromedriver did not answer at {url} within 20 s; log:\n{}",
                    self.driver_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn driver_log(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The WebDriver session, for calls this wrapper has no helper for (with [`Browser::block_on`]).
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("a WebDriver session")
    }

    /// Runs a future of the WebDriver client to completion.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Loads `url` (waits for the document to load).
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.block_on(self.client().goto(url))
            .with_context(|| format!("opening {url}"))
    }

    /// Runs JavaScript in the page (its `arguments` are `args`) and returns what it returns.
    pub fn js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.block_on(self.client().execute(script, args))?)
    }

    /// The `location.hash` of the page.
    pub fn hash(&self) -> anyhow::Result<String> {
        Ok(self
            .js("return location.hash;", vec![])?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The visible text of the page (what a failing wait reports).
    pub fn page_text(&self) -> String {
        match self.js(
            "return location.href + '\\n' + document.body.innerText;",
            vec![],
        ) {
            Ok(Value::String(s)) => s,
            Ok(v) => v.to_string(),
            Err(e) => format!("(page text not readable: {e})"),
        }
    }

    /// The text of the first element matching `css`, if there is one.
    pub fn text(&self, css: &str) -> anyhow::Result<Option<String>> {
        let v = self.js(
            "const e = document.querySelector(arguments[0]); \
             return e ? (e.innerText ?? e.textContent) : null;",
            vec![json!(css)],
        )?;
        Ok(v.as_str().map(str::to_string))
    }

    /// The texts of every element matching `css`, in document order.
    pub fn texts(&self, css: &str) -> anyhow::Result<Vec<String>> {
        let v = self.js(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText ?? e.textContent);",
            vec![json!(css)],
        )?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Polls `check` with [`crate::eventually`] until it returns `Some` or `timeout` passes;
    /// then fails with `what`, the last error of `check`, the page's text and a screenshot
    /// (`failed-<what>`).
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let mut last_error = None;
        crate::eventually(what, timeout, || match check() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err("not yet".into()),
            Err(e) => {
                let text = format!("{e:#}");
                last_error = Some(text.clone());
                Err(text)
            }
        })
        .map_err(|e| {
            let shot = self
                .screenshot(&format!("failed-{what}"))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("(no screenshot: {e})"));
            let error = last_error
                .map(|e| format!("\nlast error: {e}"))
                .unwrap_or_default();
            anyhow::anyhow!(
                "{e}{error}\nscreenshot: {shot}\npage:\n{}",
                self.page_text()
            )
        })
    }

    /// Waits until an element matches `css`; returns it.
    pub fn find(&self, css: &str) -> anyhow::Result<Element> {
        self.wait_until(&format!("element `{css}`"), WAIT, || {
            match self.block_on(self.client().find(Locator::Css(css))) {
                Ok(e) => Ok(Some(e)),
                Err(e) if e.is_no_such_element() => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Waits until the text of the element matching `css` satisfies `ok`; returns the text.
    pub fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        self.wait_until(&format!("the text of `{css}`"), timeout, || {
            Ok(self.text(css)?.filter(|t| ok(t)))
        })
    }

    /// Clicks the element matching `css` once it is there and can be clicked (the UI redraws
    /// some elements every second, so a stale or hidden element is tried again).
    pub fn click(&self, css: &str) -> anyhow::Result<()> {
        self.wait_until(&format!("a click on `{css}`"), WAIT, || {
            let e = match self.block_on(self.client().find(Locator::Css(css))) {
                Ok(e) => e,
                Err(e) if e.is_no_such_element() => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            match self.block_on(e.click()) {
                Ok(()) => Ok(Some(())),
                Err(e) if retryable(&e) => Err(e.into()),
                Err(e) => bail!("clicking `{css}`: {e}"),
            }
        })
    }

    /// Types `text` into the element matching `css`, as a user would (key events, `input`
    /// events). For a file input, `text` is the path of the file to choose.
    pub fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.find(css)?;
        self.block_on(e.send_keys(text))
            .with_context(|| format!("typing into `{css}`"))
    }

    /// Empties the input matching `css`.
    pub fn clear(&self, css: &str) -> anyhow::Result<()> {
        let e = self.find(css)?;
        self.block_on(e.clear())
            .with_context(|| format!("clearing `{css}`"))
    }

    /// Sets the value of the input or textarea matching `css` and fires an `input` event, as a
    /// paste does.
    pub fn set_value(&self, css: &str, value: &str) -> anyhow::Result<()> {
        self.find(css)?;
        self.js(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![json!(css), json!(value)],
        )?;
        Ok(())
    }

    /// Waits for a confirm() or alert() and accepts it; returns its text.
    pub fn accept_alert(&self) -> anyhow::Result<String> {
        self.wait_until("an alert", WAIT, || {
            let text = match self.block_on(self.client().get_alert_text()) {
                Ok(t) => t,
                Err(e) if e.is_no_such_alert() => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            self.block_on(self.client().accept_alert())?;
            Ok(Some(text))
        })
    }

    /// Saves a PNG of the window as `<target>/<profile>/ui-screenshots/<name>.png` (next to the
    /// workspace's binaries) and prints its path.
    pub fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.block_on(self.client().screenshot())?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        // A file name of the words of `name`: `failed-the-text-of-tm-count`.
        let file = name
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let path = dir.join(format!("{file}.png"));
        std::fs::write(&path, png)?;
        println!("screenshot: {}", path.display());
        Ok(path)
    }
}

/// Errors of an element the page is redrawing or has not shown yet.
fn retryable(e: &CmdError) -> bool {
    use fantoccini::error::ErrorStatus;
    matches!(
        e,
        CmdError::Standard(w) if matches!(
            w.error,
            ErrorStatus::StaleElementReference
                | ErrorStatus::ElementNotInteractable
                | ErrorStatus::ElementClickIntercepted
                | ErrorStatus::NoSuchElement
        )
    )
}

/// Where screenshots go: `ui-screenshots` in the target profile directory (two levels up from
/// the test executable, where [`crate::bin`] finds the binaries).
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target profile directory")
        .join("ui-screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the session (Chromium quits); the kill below is for when it does not.
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), client.close()).await
            });
        }
        // SAFETY: kill(2) on the process group chromedriver leads (it was spawned with
        // process_group(0), so its pid is the group id); no memory is involved.
        unsafe {
            libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
