//! Full-text search over the dataset registry, with facets.
//!
//! Invariants:
//! - The index is built once from the registry and answers from memory;
//!   callers rebuild it when the registry's version changes.
//! - Every query term must match somewhere (AND); matches in the name
//!   weigh most, then tags and owners, columns, and descriptions.
//! - Facet counts are over the filtered results, before paging.

use std::collections::{BTreeMap, BTreeSet};

use gridata_state::DatasetRecord;
use serde::Serialize;

/// Filters of a search.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only datasets with this tag.
    pub tag: Option<String>,
    /// Only datasets with this owner.
    pub owner: Option<String>,
    /// Only datasets with (true) or without (false) PII columns.
    pub pii: Option<bool>,
}

/// One result.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// Dataset name.
    pub name: String,
    /// Relevance.
    pub score: f64,
    /// Its description.
    pub description: Option<String>,
    /// Columns that matched.
    pub columns: Vec<String>,
}

/// Results with facets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    /// Matching datasets in all.
    pub total: usize,
    /// This page, best first.
    pub hits: Vec<Hit>,
    /// Counts by namespace, tag, owner and PII kind.
    pub facets: BTreeMap<String, BTreeMap<String, usize>>,
}

struct Doc {
    record: DatasetRecord,
    name: String,
    tags: String,
    columns: Vec<String>,
    text: String,
    pii: BTreeSet<String>,
}

/// An in-memory index of datasets.
#[derive(Default)]
pub struct Index {
    docs: Vec<Doc>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({} datasets)", self.docs.len())
    }
}

fn norm(s: &str) -> String {
    s.to_lowercase()
}

impl Index {
    /// Index datasets.
    pub fn new(records: Vec<DatasetRecord>) -> Self {
        let docs = records
            .into_iter()
            .map(|r| {
                let columns: Vec<String> = r.columns.iter().map(|c| norm(&c.name)).collect();
                let mut text = norm(r.description.as_deref().unwrap_or(""));
                for c in &r.columns {
                    if let Some(d) = &c.description {
                        text.push(' ');
                        text.push_str(&norm(d));
                    }
                }
                if let Some(d) = &r.domain {
                    text.push(' ');
                    text.push_str(&norm(d));
                }
                Doc {
                    name: norm(&r.name),
                    tags: norm(&format!(
                        "{} {} {} {}",
                        r.tags.join(" "),
                        r.owners.join(" "),
                        r.glossary_terms.join(" "),
                        r.domain.as_deref().unwrap_or_default()
                    )),
                    columns,
                    text,
                    pii: r.columns.iter().filter_map(|c| c.pii.clone()).collect(),
                    record: r,
                }
            })
            .collect();
        Self { docs }
    }

    /// Datasets indexed.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// One dataset by name.
    pub fn get(&self, name: &str) -> Option<&DatasetRecord> {
        self.docs
            .iter()
            .find(|d| d.record.name == name)
            .map(|d| &d.record)
    }

    /// Search: `query` terms (all must match; empty lists everything),
    /// filters, and a page.
    pub fn search(&self, query: &str, f: &Filters, limit: usize, offset: usize) -> Results {
        let terms: Vec<String> = query.split_whitespace().map(norm).collect();
        let mut hits: Vec<(f64, &Doc, Vec<String>)> = Vec::new();
        for d in &self.docs {
            let r = &d.record;
            if f.namespace.as_ref().is_some_and(|n| &r.namespace != n)
                || f.tag.as_ref().is_some_and(|t| !r.tags.contains(t))
                || f.owner.as_ref().is_some_and(|o| !r.owners.contains(o))
                || f.pii.is_some_and(|p| p == d.pii.is_empty())
            {
                continue;
            }
            let mut score = 0.0;
            let mut cols = Vec::new();
            let mut all = true;
            for t in &terms {
                let mut s = 0.0;
                if d.name == *t || d.name.ends_with(&format!(".{t}")) {
                    s += 10.0;
                } else if d.name.contains(t.as_str()) {
                    s += 5.0;
                }
                if d.tags.contains(t.as_str()) {
                    s += 4.0;
                }
                for c in &d.columns {
                    if c == t {
                        s += 3.0;
                        cols.push(c.clone());
                    } else if c.contains(t.as_str()) {
                        s += 1.5;
                        cols.push(c.clone());
                    }
                }
                if d.text.contains(t.as_str()) {
                    s += 2.0;
                }
                if d.pii.iter().any(|p| p.contains(t.as_str())) {
                    s += 2.0;
                }
                if s == 0.0 {
                    all = false;
                    break;
                }
                score += s;
            }
            if all {
                cols.sort();
                cols.dedup();
                hits.push((score, d, cols));
            }
        }
        let mut facets: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for (_, d, _) in &hits {
            let r = &d.record;
            *facets
                .entry("namespace".into())
                .or_default()
                .entry(r.namespace.clone())
                .or_default() += 1;
            for t in &r.tags {
                *facets
                    .entry("tag".into())
                    .or_default()
                    .entry(t.clone())
                    .or_default() += 1;
            }
            for o in &r.owners {
                *facets
                    .entry("owner".into())
                    .or_default()
                    .entry(o.clone())
                    .or_default() += 1;
            }
            for p in &d.pii {
                *facets
                    .entry("pii".into())
                    .or_default()
                    .entry(p.clone())
                    .or_default() += 1;
            }
        }
        hits.sort_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.1.record.name.cmp(&b.1.record.name))
        });
        Results {
            total: hits.len(),
            hits: hits
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(score, d, columns)| Hit {
                    name: d.record.name.clone(),
                    score,
                    description: d.record.description.clone(),
                    columns,
                })
                .collect(),
            facets,
        }
    }
}

#[cfg(test)]
mod tests {
    use gridata_state::ColumnInfo;

    use super::*;

    fn ds(name: &str, desc: &str, tags: &[&str], cols: &[(&str, Option<&str>)]) -> DatasetRecord {
        DatasetRecord {
            name: name.into(),
            namespace: name.split('.').next().unwrap().into(),
            description: Some(desc.into()),
            owners: vec!["team@x".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            domain: None,
            glossary_terms: vec![],
            columns: cols
                .iter()
                .map(|(c, p)| ColumnInfo {
                    name: c.to_string(),
                    ty: "string".into(),
                    description: None,
                    pii: p.map(String::from),
                    pii_confidence: None,
                    masking: None,
                })
                .collect(),
            row_count: None,
            snapshot_id: None,
            size_bytes: None,
            quality: None,
            pipeline: None,
            updated_ms: 0,
        }
    }

    #[test]
    fn ranks_names_first_and_counts_facets() {
        let idx = Index::new(vec![
            ds(
                "ecommerce.orders",
                "Orders with totals",
                &["gold"],
                &[("order_id", None), ("email", Some("email"))],
            ),
            ds(
                "analytics.customer_360",
                "One row per customer",
                &["gold"],
                &[("lifetime_value", None)],
            ),
            ds(
                "ecommerce.customers",
                "Customers and their orders",
                &[],
                &[("customer_id", None)],
            ),
        ]);
        let r = idx.search("orders", &Filters::default(), 10, 0);
        assert_eq!(r.hits[0].name, "ecommerce.orders");
        assert_eq!(r.total, 2);
        assert_eq!(r.facets["namespace"]["ecommerce"], 2);
        let r = idx.search(
            "customer",
            &Filters {
                tag: Some("gold".into()),
                ..Default::default()
            },
            10,
            0,
        );
        assert_eq!(
            r.hits.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ["analytics.customer_360"]
        );
        let r = idx.search(
            "",
            &Filters {
                pii: Some(true),
                ..Default::default()
            },
            10,
            0,
        );
        assert_eq!(r.total, 1);
        assert_eq!(r.facets["pii"]["email"], 1);
        assert_eq!(
            idx.search("orders nothinglikethis", &Filters::default(), 10, 0)
                .total,
            0
        );
    }
}
