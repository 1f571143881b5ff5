//! A client of a test host's admin API.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::host::{HostConfig, ADMIN_TOKEN};

/// A client of one host's admin API, as the admin token.
pub struct Api {
    /// Base URL of the admin API.
    pub base: String,
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Api {
    /// The client of `config`'s host.
    pub fn of(config: &HostConfig) -> Api {
        Api { base: config.admin_url(), http: reqwest::Client::new() }
    }

    /// Sends a request; the status and the body (JSON, or the text as a JSON string).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap_or_else(|e| panic!("admin API unreachable: {e:?}"));
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `GET` a path of the admin API.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN)).await
    }

    /// `POST` to a path of the admin API, without a body.
    pub async fn post(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN)).await
    }

    /// `POST` a JSON body to a path of the admin API.
    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN).json(body)).await
    }

    /// `PUT` a JSON body to a path of the admin API.
    pub async fn put_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN).json(body)).await
    }

    /// Uploads a component (`query` is `""` or e.g. `"?mode=hot-swap"`).
    pub async fn upload(&self, wasm: Vec<u8>, query: &str) -> (StatusCode, Value) {
        let request =
            self.http.post(format!("{}/admin/projections{query}", self.base)).bearer_auth(ADMIN_TOKEN).body(wasm);
        self.send(request).await
    }

    /// Waits until the API answers.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) =
                self.http.get(format!("{}/admin/projections", self.base)).bearer_auth(ADMIN_TOKEN).send().await
            {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("admin API at {} never answered", self.base);
    }

    /// The deployments of a projection, newest first.
    pub async fn deployments(&self, name: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/admin/projections/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["deployments"].as_array().unwrap().clone()
    }

    /// (build, state) of each deployment of a projection, newest first.
    pub async fn builds(&self, name: &str) -> Vec<(i64, String)> {
        self.deployments(name)
            .await
            .iter()
            .map(|d| (d["build"].as_i64().unwrap(), d["state"].as_str().unwrap().to_string()))
            .collect()
    }

    /// Waits until deployment `id` of `name` is in `state`.
    pub async fn wait_state(&self, name: &str, id: i64, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let deployments = self.deployments(name).await;
            let d = deployments.iter().find(|d| d["id"] == id).unwrap_or_else(|| panic!("no deployment {id}"));
            if d["state"] == state {
                return d.clone();
            }
            assert_ne!(d["state"], "failed", "{d}");
            assert!(Instant::now() < deadline, "deployment {id} of {name} not {state}: {d}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The bytes of a component file.
pub fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
