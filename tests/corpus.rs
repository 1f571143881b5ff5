//! The conformance corpus: `tests/conformance/*.json`, read for the host's runner
//! (`all/conformance.rs`). Each file holds a default declaration and cases; a case is a
//! declaration, batches of events of operations, and the rows it must leave or the stage at
//! which it must be rejected. The format is described in `conformance/README.md`.

use std::path::PathBuf;

use serde_json::Value as Json;

/// Where the corpus lives.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// One case of the corpus.
pub struct Case {
    /// The file it comes from.
    pub file: String,
    /// What it shows.
    pub name: String,
    /// The declaration (the registry's JSON form of a projection spec).
    pub declaration: Json,
    /// Batches of events, each event a list of operations.
    pub batches: Vec<Vec<Vec<Json>>>,
    /// What the case must end with.
    pub expect: Json,
}

/// What running a case came to.
#[derive(Debug)]
pub enum Outcome {
    /// The declaration was refused, with this message.
    Declaration(String),
    /// An event was refused, with this message.
    Operation(String),
    /// Everything was applied: the rows per collection, in key order.
    Rows(Json),
}

impl Case {
    /// `file: name`, for messages.
    pub fn title(&self) -> String {
        format!("{}: {}", self.file, self.name)
    }

    /// Whether `outcome` is what the case expects; `same` compares the rows.
    pub fn check(&self, outcome: &Outcome, same: fn(&Json, &Json) -> bool) -> Result<(), String> {
        match (self.expect.get("error").and_then(Json::as_str), outcome) {
            (Some("declaration"), Outcome::Declaration(_)) | (Some("operation"), Outcome::Operation(_)) => Ok(()),
            (None, Outcome::Rows(rows)) if same(rows, &self.expect["rows"]) => Ok(()),
            (None, Outcome::Rows(rows)) => Err(format!("rows {rows}, expected {}", self.expect["rows"])),
            (expected, outcome) => Err(format!("{outcome:?}, expected {}", expected.unwrap_or("rows"))),
        }
    }
}

/// Every case of the corpus, file by file in name order.
pub fn cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("the corpus directory")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let document: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for case in document["cases"].as_array().expect("cases") {
            let declaration = case.get("declaration").unwrap_or(&document["declaration"]).clone();
            cases.push(Case {
                file: file.clone(),
                name: case["name"].as_str().expect("name").to_owned(),
                declaration,
                batches: serde_json::from_value(case["batches"].clone()).expect("batches of events of operations"),
                expect: case["expect"].clone(),
            });
        }
    }
    cases
}

/// Rows equal in the corpus's sense: the same members and strings, numbers of equal value (a
/// float `2` is `2.0`; digits matter only where the value is a string, as decimals are).
pub fn same_rows(actual: &Json, expected: &Json) -> bool {
    match (actual, expected) {
        (Json::Number(a), Json::Number(b)) => number(a) == number(b),
        (Json::Array(a), Json::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_rows(a, b)),
        (Json::Object(a), Json::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_rows(v, w)))
        }
        (a, b) => a == b,
    }
}

fn number(n: &serde_json::Number) -> Option<rust_decimal::Decimal> {
    let text = n.to_string();
    text.parse::<rust_decimal::Decimal>().ok().or_else(|| rust_decimal::Decimal::from_scientific(&text).ok())
}
