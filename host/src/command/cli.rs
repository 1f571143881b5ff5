//! `projector projections ...`: a command-line client of the admin API.
//!
//! `push` and `rebuild` follow the new deployment with a progress bar (events applied, events
//! per second, time left) until it is live, and fail when it fails.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use projector::admin::views::{
    DeadLetterList, DeploymentAction, PolicySet, ProjectionList, ProjectionView, Redriving, Removed, RolledBack,
    Steered, Uploaded,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where the admin API is and how to authenticate.
pub(crate) struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the admin API at `base` (e.g. `http://127.0.0.1:8081`).
    pub(crate) fn new(base: &str, token: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), token: token.to_string(), http: reqwest::Client::new() }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.bearer_auth(&self.token).send().await.context("the admin API is unreachable")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("error");
            let message = body["error"]["message"].as_str().unwrap_or("no details");
            bail!("{status}: {code}: {message}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// A GET whose answer has a type of the API's own: a body that does not decode is an error
    /// naming the route, not a row of blanks.
    async fn get_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        decode(path, self.get(path).await?)
    }

    async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base))).await
    }

    /// Uploads a component; returns the API's answer.
    pub(crate) async fn push(&self, file: &Path, hot_swap: bool, on_poison: Option<&str>) -> anyhow::Result<Uploaded> {
        let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let checksum = hex::encode(Sha256::digest(&wasm));
        let mut query: Vec<String> = Vec::new();
        if hot_swap {
            query.push("mode=hot-swap".into());
        }
        if let Some(policy) = on_poison {
            query.push(format!("on_poison={policy}"));
        }
        let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        let request = self
            .http
            .post(format!("{}/admin/projections{query}", self.base))
            .header("X-Checksum-Sha256", checksum)
            .header("Content-Type", "application/wasm")
            .body(wasm);
        decode("/admin/projections", self.send(request).await?)
    }

    /// Prints every projection as a table.
    pub(crate) async fn list(&self) -> anyhow::Result<()> {
        let body: ProjectionList = self.get_as("/admin/projections").await?;
        let mut table = comfy_table::Table::new();
        table.load_style(comfy_table::presets::UTF8_BORDERS_ONLY).set_header([
            "projection",
            "version",
            "build",
            "state",
            "lag",
            "events/s",
            "sha256",
        ]);
        for projection in &body.projections {
            for d in &projection.deployments {
                table.add_row([
                    projection.name.clone(),
                    d.version.to_string(),
                    d.build.to_string(),
                    d.state.clone(),
                    d.lag.to_string(),
                    d.events_per_second.to_string(),
                    d.sha256.chars().take(12).collect(),
                ]);
            }
        }
        println!("{table}");
        Ok(())
    }

    /// Prints one projection in detail (the API's JSON).
    pub(crate) async fn status(&self, name: &str) -> anyhow::Result<()> {
        let body = self.get(&format!("/admin/projections/{name}")).await?;
        println!("{}", serde_json::to_string_pretty(&body)?);
        Ok(())
    }

    /// Starts a rebuild; returns the API's answer.
    pub(crate) async fn rebuild(&self, name: &str) -> anyhow::Result<DeploymentAction> {
        let path = format!("/admin/projections/{name}/rebuild");
        decode(&path, self.post(&path).await?)
    }

    /// Rolls back to the standby deployment.
    pub(crate) async fn rollback(&self, name: &str) -> anyhow::Result<RolledBack> {
        let path = format!("/admin/projections/{name}/rollback");
        decode(&path, self.post(&path).await?)
    }

    /// Pauses (`pause`) or resumes (`resume`) every deployment of a projection.
    pub(crate) async fn steer(&self, name: &str, action: &str) -> anyhow::Result<Steered> {
        let path = format!("/admin/projections/{name}/{action}");
        decode(&path, self.post(&path).await?)
    }

    /// Sets the poison policy.
    pub(crate) async fn set_policy(&self, name: &str, on_poison: &str) -> anyhow::Result<PolicySet> {
        let path = format!("/admin/projections/{name}/policy");
        let request = self.http.put(format!("{}{path}", self.base)).json(&serde_json::json!({"on_poison": on_poison}));
        decode(&path, self.send(request).await?)
    }

    /// Skips the event a deployment halted at.
    pub(crate) async fn skip(&self, name: &str, partition: i32, offset: i64) -> anyhow::Result<DeploymentAction> {
        let path = format!("/admin/projections/{name}/skip");
        let at = serde_json::json!({"partition": partition, "offset": offset});
        decode(&path, self.send(self.http.post(format!("{}{path}", self.base)).json(&at)).await?)
    }

    /// Requests a re-drive of every pending dead letter, or of the one at `at`.
    pub(crate) async fn redrive(&self, name: &str, at: Option<(i32, i64)>) -> anyhow::Result<Redriving> {
        let path = format!("/admin/projections/{name}/dead-letters/redrive");
        let request = self.http.post(format!("{}{path}", self.base));
        let request = match at {
            Some((partition, offset)) => request.json(&serde_json::json!({"partition": partition, "offset": offset})),
            None => request,
        };
        decode(&path, self.send(request).await?)
    }

    /// Prints the dead letters as a table.
    pub(crate) async fn dead_letters(&self, name: &str, pending: bool) -> anyhow::Result<()> {
        let list: DeadLetterList =
            self.get_as(&format!("/admin/projections/{name}/dead-letters?pending={pending}")).await?;
        let mut table = comfy_table::Table::new();
        table.load_style(comfy_table::presets::UTF8_BORDERS_ONLY).set_header([
            "version",
            "partition",
            "offset",
            "key",
            "reason",
            "state",
            "attempts",
            "error",
        ]);
        for view in list.dead_letters {
            let letter = &view.letter;
            let state = if letter.redriven_at.is_some() {
                "re-driven"
            } else if letter.redrive_requested_at.is_some() {
                "re-drive requested"
            } else {
                "pending"
            };
            let error = letter.last_redrive_error.as_deref().unwrap_or(&letter.error);
            let key = match letter.event.as_ref().and_then(|e| e.key.as_ref()) {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            table.add_row([
                format!("{}.{}", view.version, view.build),
                letter.partition.to_string(),
                letter.offset.to_string(),
                key,
                letter.reason.clone(),
                state.to_string(),
                letter.attempts.to_string(),
                compact(error, 120),
            ]);
        }
        println!("{table}");
        Ok(())
    }

    /// Removes a projection.
    pub(crate) async fn remove(&self, name: &str) -> anyhow::Result<Removed> {
        let path = format!("/admin/projections/{name}");
        decode(&path, self.send(self.http.delete(format!("{}{path}", self.base))).await?)
    }

    /// Shows a progress bar until deployment `id` of `name` is live; fails if it fails.
    pub(crate) async fn follow(&self, name: &str, id: i64) -> anyhow::Result<()> {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:40}] {pos}/{len} events  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{name} building"));
        loop {
            let body: ProjectionView = self.get_as(&format!("/admin/projections/{name}")).await?;
            let Some(d) = body.deployments.into_iter().find(|d| d.id == id) else {
                bar.abandon_with_message("the deployment was removed");
                bail!("deployment {id} of {name} no longer exists");
            };
            bar.set_length((d.applied + d.lag).max(0) as u64);
            bar.set_position(d.applied.max(0) as u64);
            let eta = d.eta_seconds.map(|s| format!(", ETA {s:.0} s")).unwrap_or_default();
            bar.set_message(format!("{:.0} events/s{eta}", d.events_per_second));
            match d.state.as_str() {
                "live" => {
                    bar.finish_with_message(format!("live (version {}, build {})", d.version, d.build));
                    return Ok(());
                }
                "failed" => {
                    let error = d.last_error.map_or_else(|| "unknown error".to_string(), |e| e.message);
                    bar.abandon_with_message(format!("failed: {error}"));
                    bail!("{name} failed: {error}");
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// Decodes an answer of `path` into its type.
fn decode<T: DeserializeOwned>(path: &str, body: Value) -> anyhow::Result<T> {
    serde_json::from_value(body).with_context(|| format!("the admin API answered {path} in an unexpected form"))
}

/// `text` on one line, at most about `most` characters: its start and its end (where a trap's
/// cause is) around an ellipsis.
fn compact(text: &str, most: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= most {
        return line;
    }
    let half = most / 2;
    let (start, end): (String, String) = (chars[..half].iter().collect(), chars[chars.len() - half..].iter().collect());
    format!("{start} … {end}")
}
