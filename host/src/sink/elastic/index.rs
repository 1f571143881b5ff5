//! What the search engine holds for a collection, derived from its declaration alone: index and
//! alias names, settings and mappings, and the stored script every write goes through.
//!
//! Invariants:
//! - Every field the host adds to a document has a `-` in its name (`projector-applied`,
//!   `projector-deleted`, `projector-search`), so it can never meet a declared field (those are
//!   lowercase letters, digits and `_`).
//! - Mappings are strict: a document can only hold declared fields and the host's own.
//! - Decimals are kept in `_source` as the exact decimal strings the host sends, and indexed as
//!   doubles for sorting and ranges; timestamps and dates as ISO 8601 text, indexed as dates.

use serde_json::{json, Map, Value as Json};

use crate::config::ElasticsearchConfig;
use crate::contract::{Collection, FieldType};

/// Per-partition marks of what a document has applied (see the script).
pub const APPLIED: &str = "projector-applied";
/// Set on a deleted document: kept as a tombstone so a replayed or stale write cannot revive it.
pub const DELETED: &str = "projector-deleted";
/// The full-text field every searchable field is copied into.
pub const SEARCH: &str = "projector-search";
/// Name of the stored script: named after its source's digest, so hosts of different versions
/// sharing a cluster each call their own.
pub fn script_id() -> String {
    use sha2::Digest;
    format!("projector-apply-{}", &hex::encode(sha2::Sha256::digest(SCRIPT))[..16])
}

/// The public alias of a collection: the serving deployment's index.
pub fn alias(config: &ElasticsearchConfig, collection: &str) -> String {
    format!("{}{collection}", config.index_prefix)
}

/// The index of one deployment's collection (`schema` names the deployment).
pub fn name(config: &ElasticsearchConfig, collection: &str, schema: &str) -> String {
    format!("{}{collection}-{}", config.index_prefix, schema.replace('_', "-"))
}

/// The body of the request creating a collection's index.
pub fn definition(config: &ElasticsearchConfig, collection: &Collection) -> Json {
    let mut properties = Map::new();
    let searchable = collection.fields.iter().any(|f| f.searchable);
    for field in &collection.fields {
        let mut mapping = field_mapping(&field.type_);
        if field.searchable {
            if let Some(object) = mapping.as_object_mut() {
                object.insert("copy_to".into(), json!(SEARCH));
            }
        }
        properties.insert(field.name.clone(), mapping);
    }
    properties.insert(APPLIED.into(), json!({"type": "object", "enabled": false}));
    properties.insert(DELETED.into(), json!({"type": "boolean"}));
    if searchable {
        properties.insert(
            SEARCH.into(),
            json!({
                "type": "text",
                "analyzer": "projector_document",
                "search_analyzer": "projector_query",
                "index_prefixes": {"min_chars": 1, "max_chars": 10}
            }),
        );
    }
    json!({
        "settings": {
            "number_of_shards": config.shards,
            "number_of_replicas": config.replicas,
            "refresh_interval": format!("{}ms", config.refresh_interval_ms),
            "analysis": analysis(),
        },
        "mappings": {"dynamic": "strict", "properties": properties},
    })
}

/// Words split where the PostgreSQL search splits them (white space and query syntax), compound
/// words (`sku-grinder`, `ord-1001`) kept whole and also as their parts, case and accents folded.
fn analysis() -> Json {
    json!({
        "tokenizer": {
            "projector_words": {"type": "pattern", "pattern": "[\\s'\\\\&|!():<>*,;\"]+"}
        },
        "filter": {
            "projector_parts": {
                "type": "word_delimiter_graph",
                "preserve_original": true,
                "split_on_case_change": false,
                "split_on_numerics": false,
                "stem_english_possessive": false
            }
        },
        "analyzer": {
            "projector_document": {
                "tokenizer": "projector_words",
                "filter": ["projector_parts", "lowercase", "asciifolding", "flatten_graph"]
            },
            "projector_query": {"tokenizer": "projector_words", "filter": ["lowercase", "asciifolding"]}
        }
    })
}

fn field_mapping(field_type: &FieldType) -> Json {
    match field_type {
        FieldType::Boolean => json!({"type": "boolean"}),
        FieldType::Integer => json!({"type": "long"}),
        FieldType::Float | FieldType::Decimal => json!({"type": "double"}),
        // Longer values are kept in the document but not indexed (Lucene's term limit).
        FieldType::Text => json!({"type": "keyword", "ignore_above": 8191}),
        FieldType::Timestamp => json!({"type": "date", "format": "strict_date_optional_time"}),
        FieldType::Date => json!({"type": "date", "format": "strict_date"}),
        FieldType::Json => json!({"type": "object", "enabled": false}),
        FieldType::List(element) => field_mapping(&element.field_type()),
    }
}

/// The stored script applying one document's steps of a batch (`params.steps`, in event
/// order), then its key fields (`params.key`) and computed ratios (`params.ratios`).
///
/// Each step carries its event's partition and offset. A document keeps, per partition, the
/// highest offset it applied (`projector-applied.p`), and the re-driven dead letters it applied
/// (`projector-applied.r`, by `partition:offset`, since those are older than the mark). A step at
/// or below its partition's mark is skipped: a batch replayed after a crash, re-cut differently,
/// or written late by a stale owner changes nothing it already changed, also when the document
/// is fed from several partitions. A delete clears the declared fields and leaves a tombstone
/// holding the marks. Nothing new to apply is a `noop`.
pub const SCRIPT: &str = r#"
Map s = ctx._source;
Map m = s['projector-applied'];
if (m == null) { m = new HashMap(); m['p'] = new HashMap(); m['r'] = new HashMap(); s['projector-applied'] = m; }
Map hw = m['p'];
Map rd = m['r'];
boolean changed = false;
for (Map step : params.steps) {
  String p = String.valueOf(step['p']);
  long o = ((Number) step['o']).longValue();
  if (step['r'] == true) {
    String k = p + ':' + o;
    if (rd.containsKey(k)) { continue; }
    rd[k] = true;
  } else {
    Object seen = hw[p];
    if (seen != null && ((Number) seen).longValue() >= o) { continue; }
    hw[p] = o;
  }
  changed = true;
  if (step['d'] == true) {
    s.keySet().removeIf(f -> !f.startsWith('projector-'));
    s['projector-deleted'] = true;
  }
  Map set = step['s'];
  List add = step['a'];
  if (set.size() > 0 || add.size() > 0) { s.remove('projector-deleted'); }
  for (def e : set.entrySet()) { s[e.getKey()] = e.getValue(); }
  for (List a : add) {
    String f = a[0];
    String kind = a[1];
    def cur = s[f];
    if (kind == 'i') {
      long x = cur == null ? 0L : ((Number) cur).longValue();
      long y = ((Number) a[2]).longValue();
      long r = x + y;
      if (((x ^ r) & (y ^ r)) < 0) { throw new IllegalArgumentException('projector: integer increment of ' + f + ' overflows 64 bits at ' + p + ':' + o); }
      s[f] = r;
    } else if (kind == 'f') {
      s[f] = (cur == null ? 0.0 : ((Number) cur).doubleValue()) + ((Number) a[2]).doubleValue();
    } else if (kind == 'd') {
      s[f] = (cur == null ? BigDecimal.ZERO : new BigDecimal(cur.toString())).add(new BigDecimal(a[2])).toPlainString();
    } else {
      Map counts = cur instanceof Map ? cur : new HashMap();
      for (def e : a[2].entrySet()) {
        def before = counts[e.getKey()];
        BigDecimal v = (before == null ? BigDecimal.ZERO : new BigDecimal(before.toString())).add(new BigDecimal(e.getValue()));
        if (v.signum() == 0) { counts.remove(e.getKey()); continue; }
        v = v.stripTrailingZeros();
        if (v.scale() <= 0 && v.precision() - v.scale() <= 18) { counts[e.getKey()] = v.longValue(); } else { counts[e.getKey()] = v; }
      }
      s[f] = counts;
    }
  }
}
if (!changed) { ctx.op = 'noop'; return; }
for (def e : params.key.entrySet()) { s[e.getKey()] = e.getValue(); }
if (s['projector-deleted'] == true) { return; }
for (List r : params.ratios) {
  def n = s[r[1]];
  def d = s[r[2]];
  if (n == null || d == null) { s[r[0]] = null; continue; }
  BigDecimal dd = new BigDecimal(d.toString());
  if (dd.signum() == 0) { s[r[0]] = null; continue; }
  s[r[0]] = new BigDecimal(n.toString()).divide(dd, MathContext.DECIMAL128).setScale(((Number) r[3]).intValue(), RoundingMode.HALF_UP).toPlainString();
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::stats_spec;

    #[test]
    fn mappings_follow_the_declaration() {
        let config = ElasticsearchConfig::default();
        let mut spec = stats_spec();
        spec.collections[0].fields[5].searchable = true;
        let body = definition(&config, &spec.collections[0]);
        let properties = &body["mappings"]["properties"];
        assert_eq!(properties["day"], json!({"type": "date", "format": "strict_date"}));
        assert_eq!(properties["count"], json!({"type": "long"}));
        assert_eq!(properties["revenue"], json!({"type": "double"}));
        assert_eq!(properties["by_status"], json!({"type": "object", "enabled": false}));
        assert_eq!(properties["tags"], json!({"type": "keyword", "ignore_above": 8191, "copy_to": SEARCH}));
        assert_eq!(properties[SEARCH]["search_analyzer"], "projector_query");
        assert_eq!(body["mappings"]["dynamic"], "strict");
        assert_eq!(body["settings"]["number_of_replicas"], 0);
        assert_eq!(name(&config, "daily", "p_daily_stats_v3_b0"), "projector-daily-p-daily-stats-v3-b0");
        assert_eq!(alias(&config, "daily"), "projector-daily");
    }
}
