//! The lineage graph over recorded edges: upstream, downstream, impact,
//! and DOT export.
//!
//! Invariants:
//! - Nodes are (dataset, column); the column `""` stands for a dataset's
//!   rows (filters, join and grouping keys decide every row).
//! - Walks visit each node once, so cycles (a table feeding itself) end.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use gridata_state::LineageEdge;
use serde::Serialize;

/// Which way to walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards sources.
    Upstream,
    /// Towards consumers.
    Downstream,
}

/// A column (or `""`: the rows) of a dataset.
pub type Node = (String, String);

/// The result of a walk: the edges crossed, with their distance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Walk {
    /// Edges in the order found, with the hop count from the start.
    pub edges: Vec<(usize, LineageEdge)>,
}

/// What changing a column affects.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Impact {
    /// Every downstream column (`""` means every row of the dataset).
    pub columns: BTreeSet<Node>,
    /// Every downstream dataset.
    pub datasets: BTreeSet<String>,
    /// Pipelines whose writes read an affected column.
    pub pipelines: BTreeSet<String>,
}

/// The recorded lineage as a graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    edges: Vec<LineageEdge>,
    by_target: BTreeMap<Node, Vec<usize>>,
    by_source: BTreeMap<Node, Vec<usize>>,
}

impl Graph {
    /// A graph over edges.
    pub fn new(edges: Vec<LineageEdge>) -> Self {
        let mut g = Self {
            edges,
            ..Default::default()
        };
        for (i, e) in g.edges.iter().enumerate() {
            g.by_target
                .entry((e.target_dataset.clone(), e.target_field.clone()))
                .or_default()
                .push(i);
            g.by_source
                .entry((e.source_dataset.clone(), e.source_field.clone()))
                .or_default()
                .push(i);
        }
        g
    }

    /// Datasets that appear in the graph.
    pub fn datasets(&self) -> BTreeSet<String> {
        self.edges
            .iter()
            .flat_map(|e| [e.target_dataset.clone(), e.source_dataset.clone()])
            .collect()
    }

    fn starts(&self, dataset: &str, column: Option<&str>, dir: Direction) -> Vec<Node> {
        match column {
            Some(c) => vec![(dataset.to_string(), c.to_string())],
            None => {
                let index = match dir {
                    Direction::Upstream => &self.by_target,
                    Direction::Downstream => &self.by_source,
                };
                index
                    .keys()
                    .filter(|(d, _)| d == dataset)
                    .cloned()
                    .collect()
            }
        }
    }

    /// Walk from a column (or every column of a dataset) up to `depth`
    /// hops (0: no limit). Upstream, a column also depends on its
    /// dataset's row-level sources.
    pub fn walk(&self, dataset: &str, column: Option<&str>, dir: Direction, depth: usize) -> Walk {
        let mut out = Walk::default();
        let mut seen: BTreeSet<Node> = BTreeSet::new();
        let mut queue: VecDeque<(Node, usize)> = self
            .starts(dataset, column, dir)
            .into_iter()
            .map(|n| (n, 0))
            .collect();
        let mut crossed = BTreeSet::new();
        while let Some((node, d)) = queue.pop_front() {
            if !seen.insert(node.clone()) || (depth > 0 && d >= depth) {
                continue;
            }
            let mut next: Vec<usize> = Vec::new();
            match dir {
                Direction::Upstream => {
                    next.extend(self.by_target.get(&node).into_iter().flatten());
                    if !node.1.is_empty() {
                        let rows = (node.0.clone(), String::new());
                        next.extend(self.by_target.get(&rows).into_iter().flatten());
                    }
                }
                Direction::Downstream => {
                    next.extend(self.by_source.get(&node).into_iter().flatten());
                }
            }
            for i in next {
                if !crossed.insert(i) {
                    continue;
                }
                let e = &self.edges[i];
                out.edges.push((d + 1, e.clone()));
                let far = match dir {
                    Direction::Upstream => (e.source_dataset.clone(), e.source_field.clone()),
                    Direction::Downstream => (e.target_dataset.clone(), e.target_field.clone()),
                };
                queue.push_back((far, d + 1));
            }
        }
        out
    }

    /// Everything downstream of a column: columns, datasets, pipelines.
    /// A change to a row-level source (a join or filter key) reaches every
    /// column of the datasets it feeds.
    pub fn impact(&self, dataset: &str, column: &str) -> Impact {
        let walk = self.walk(dataset, Some(column), Direction::Downstream, 0);
        let mut impact = Impact::default();
        for (_, e) in walk.edges {
            impact
                .columns
                .insert((e.target_dataset.clone(), e.target_field.clone()));
            impact.datasets.insert(e.target_dataset.clone());
            impact.pipelines.insert(e.pipeline.clone());
        }
        // Row-level effects reach every column of those datasets and beyond.
        let mut expanded = BTreeSet::new();
        loop {
            let rows: Vec<String> = impact
                .columns
                .iter()
                .filter(|(d, c)| c.is_empty() && !expanded.contains(d))
                .map(|(d, _)| d.clone())
                .collect();
            if rows.is_empty() {
                break;
            }
            for d in rows {
                expanded.insert(d.clone());
                for (ds, c) in self.by_target.keys() {
                    if *ds == d && !c.is_empty() {
                        impact.columns.insert((ds.clone(), c.clone()));
                    }
                }
                for (_, e) in self.walk(&d, None, Direction::Downstream, 0).edges {
                    impact
                        .columns
                        .insert((e.target_dataset.clone(), e.target_field.clone()));
                    impact.datasets.insert(e.target_dataset.clone());
                    impact.pipelines.insert(e.pipeline.clone());
                }
            }
        }
        impact
    }

    /// Graphviz DOT of some edges: datasets as clusters of columns.
    pub fn dot(edges: &[LineageEdge]) -> String {
        let mut clusters: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for e in edges {
            clusters
                .entry(&e.source_dataset)
                .or_default()
                .insert(&e.source_field);
            clusters
                .entry(&e.target_dataset)
                .or_default()
                .insert(&e.target_field);
        }
        let id = |d: &str, c: &str| format!("\"{}\"", format!("{d}.{c}").replace('"', "\\\""));
        let mut out =
            String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n");
        for (i, (d, cols)) in clusters.iter().enumerate() {
            out.push_str(&format!(
                "  subgraph cluster_{i} {{\n    label=\"{}\";\n",
                d.replace('"', "\\\"")
            ));
            for c in cols {
                let label = if c.is_empty() { "(rows)" } else { c };
                out.push_str(&format!("    {} [label=\"{label}\"];\n", id(d, c)));
            }
            out.push_str("  }\n");
        }
        for e in edges {
            let style = if e
                .subtypes
                .iter()
                .all(|s| matches!(s.as_str(), "IDENTITY" | "TRANSFORMATION" | "AGGREGATION"))
            {
                "solid"
            } else {
                "dashed"
            };
            out.push_str(&format!(
                "  {} -> {} [label=\"{}\", style={style}];\n",
                id(&e.source_dataset, &e.source_field),
                id(&e.target_dataset, &e.target_field),
                e.subtypes.join(",")
            ));
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: &str, tf: &str, s: &str, sf: &str, sub: &str, p: &str) -> LineageEdge {
        LineageEdge {
            target_dataset: t.into(),
            target_field: tf.into(),
            source_dataset: s.into(),
            source_field: sf.into(),
            subtypes: vec![sub.into()],
            pipeline: p.into(),
            task_id: "w".into(),
            run_id: "r".into(),
            updated_ms: 0,
        }
    }

    fn graph() -> Graph {
        Graph::new(vec![
            e(
                "orders",
                "total",
                "raw:o.csv",
                "price",
                "TRANSFORMATION",
                "load",
            ),
            e("orders", "cust", "raw:o.csv", "cust", "IDENTITY", "load"),
            e("c360", "ltv", "orders", "total", "AGGREGATION", "c360"),
            e("c360", "", "orders", "cust", "JOIN", "c360"),
            e("c360", "name", "customers", "name", "IDENTITY", "c360"),
        ])
    }

    #[test]
    fn upstream_reaches_raw_files_through_tables() {
        let w = graph().walk("c360", Some("ltv"), Direction::Upstream, 0);
        let got: Vec<(usize, String)> = w
            .edges
            .iter()
            .map(|(d, e)| (*d, format!("{}.{}", e.source_dataset, e.source_field)))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "orders.total".into()),
                (1, "orders.cust".into()),
                (2, "raw:o.csv.price".into()),
                (2, "raw:o.csv.cust".into()),
            ]
        );
        assert_eq!(
            graph()
                .walk("c360", Some("ltv"), Direction::Upstream, 1)
                .edges
                .len(),
            2
        );
    }

    #[test]
    fn impact_of_a_join_key_reaches_every_column() {
        let i = graph().impact("raw:o.csv", "cust");
        assert!(i.columns.contains(&("c360".into(), "ltv".into())));
        assert!(i.columns.contains(&("c360".into(), "name".into())));
        assert_eq!(i.datasets, BTreeSet::from(["orders".into(), "c360".into()]));
        assert_eq!(i.pipelines, BTreeSet::from(["load".into(), "c360".into()]));
        let dot = Graph::dot(
            &graph()
                .walk("c360", None, Direction::Upstream, 0)
                .edges
                .into_iter()
                .map(|(_, e)| e)
                .collect::<Vec<_>>(),
        );
        assert!(dot.starts_with("digraph lineage"));
        assert!(
            dot.contains("\"orders.total\" -> \"c360.ltv\" [label=\"AGGREGATION\", style=solid]")
        );
    }
}
