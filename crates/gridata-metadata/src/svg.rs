//! Layered drawings of directed graphs as SVG: lineage (datasets with
//! their columns as rows) and pipeline DAGs (tasks).
//!
//! Invariants:
//! - The output is self-contained SVG with presentation attributes only
//!   (no `<style>`, no script, no external reference), so it renders alone
//!   and inside a page with a strict Content-Security-Policy.
//! - Every node is a `<g class="node" data-node=…>` and every row a
//!   `<g class="row" data-node=… data-row=…>`, so a page can make them
//!   interactive; all text is XML-escaped.
//! - The layout is deterministic: the same graph gives the same bytes.
//! - Cycles are allowed: an edge that closes a cycle does not push its
//!   target right.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use gridata_state::LineageEdge;

const NODE_W: f64 = 230.0;
const GAP_X: f64 = 90.0;
const GAP_Y: f64 = 22.0;
const HEAD_H: f64 = 28.0;
const ROW_H: f64 = 20.0;
const PAD: f64 = 16.0;
const MAX_CHARS: usize = 30;

/// A box in the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// Title shown in its header.
    pub title: String,
    /// Rows (such as columns), in order.
    pub rows: Vec<String>,
    /// Extra CSS classes, such as a state.
    pub class: String,
}

/// An arrow from a node (or one of its rows) to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Source node id.
    pub from: String,
    /// Source row, if the arrow starts at a row.
    pub from_row: Option<String>,
    /// Target node id.
    pub to: String,
    /// Target row.
    pub to_row: Option<String>,
    /// Drawn dashed (an indirect dependency).
    pub dashed: bool,
    /// Extra CSS classes.
    pub class: String,
}

/// Escape text for XML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_CHARS {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX_CHARS - 1).collect();
        format!("{head}…")
    }
}

/// Layers by longest path from the sources, ignoring edges that close a
/// cycle.
fn layers(nodes: &[Node], edges: &[Edge]) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut succ: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    for e in edges {
        if let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str()))
            && a != b
        {
            succ[a].insert(b);
        }
    }
    // Depth-first order; edges to a node on the stack are back edges.
    let mut state = vec![0u8; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    let mut back: BTreeSet<(usize, usize)> = BTreeSet::new();
    for start in 0..nodes.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, Vec<usize>)> =
            vec![(start, succ[start].iter().copied().collect())];
        state[start] = 1;
        while let Some((n, rest)) = stack.last_mut() {
            if let Some(m) = rest.pop() {
                let n = *n;
                match state[m] {
                    0 => {
                        state[m] = 1;
                        stack.push((m, succ[m].iter().copied().collect()));
                    }
                    1 => {
                        back.insert((n, m));
                    }
                    _ => {}
                }
            } else {
                state[*n] = 2;
                order.push(*n);
                stack.pop();
            }
        }
    }
    let mut layer = vec![0usize; nodes.len()];
    for &n in order.iter().rev() {
        for &m in &succ[n] {
            if !back.contains(&(n, m)) {
                layer[m] = layer[m].max(layer[n] + 1);
            }
        }
    }
    layer
}

fn height(n: &Node) -> f64 {
    HEAD_H + n.rows.len() as f64 * ROW_H + if n.rows.is_empty() { 0.0 } else { 6.0 }
}

/// Draw a graph, left to right. `label` names it for screen readers.
pub fn render(label: &str, nodes: &[Node], edges: &[Edge]) -> String {
    let layer = layers(nodes, edges);
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let n_layers = layer.iter().max().map_or(0, |m| m + 1);
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); n_layers];
    for (i, &l) in layer.iter().enumerate() {
        columns[l].push(i);
    }
    // Barycenter sweeps to reduce crossings.
    let mut pos = vec![0.0f64; nodes.len()];
    let set_pos = |columns: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
        for col in columns {
            for (k, &i) in col.iter().enumerate() {
                pos[i] = k as f64;
            }
        }
    };
    set_pos(&columns, &mut pos);
    let neighbours = |i: usize, forward: bool| -> Vec<usize> {
        edges
            .iter()
            .filter_map(|e| {
                let (a, b) = (index.get(e.from.as_str())?, index.get(e.to.as_str())?);
                if forward && *b == i {
                    Some(*a)
                } else if !forward && *a == i {
                    Some(*b)
                } else {
                    None
                }
            })
            .collect()
    };
    for sweep in 0..4 {
        let forward = sweep % 2 == 0;
        let order: Vec<usize> = if forward {
            (1..n_layers).collect()
        } else {
            (0..n_layers.saturating_sub(1)).rev().collect()
        };
        for l in order {
            let mut keyed: Vec<(f64, usize)> = columns[l]
                .iter()
                .map(|&i| {
                    let ns = neighbours(i, forward);
                    let key = if ns.is_empty() {
                        pos[i]
                    } else {
                        ns.iter().map(|&j| pos[j]).sum::<f64>() / ns.len() as f64
                    };
                    (key, i)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            columns[l] = keyed.into_iter().map(|(_, i)| i).collect();
            set_pos(&columns, &mut pos);
        }
    }
    // Coordinates: columns are centred vertically.
    let col_h: Vec<f64> = columns
        .iter()
        .map(|c| c.iter().map(|&i| height(&nodes[i]) + GAP_Y).sum::<f64>() - GAP_Y)
        .collect();
    let max_h = col_h.iter().copied().fold(0.0, f64::max).max(HEAD_H);
    let mut xy = vec![(0.0f64, 0.0f64); nodes.len()];
    for (l, col) in columns.iter().enumerate() {
        let mut y = PAD + (max_h - col_h[l]) / 2.0;
        for &i in col {
            xy[i] = (PAD + l as f64 * (NODE_W + GAP_X), y);
            y += height(&nodes[i]) + GAP_Y;
        }
    }
    let width = PAD * 2.0 + n_layers.max(1) as f64 * (NODE_W + GAP_X) - GAP_X;
    let total_h = PAD * 2.0 + max_h;
    let anchor = |i: usize, row: &Option<String>, right: bool| -> (f64, f64) {
        let (x, y) = xy[i];
        let x = if right { x + NODE_W } else { x };
        let y = match row
            .as_ref()
            .and_then(|r| nodes[i].rows.iter().position(|x| x == r))
        {
            Some(k) => y + HEAD_H + k as f64 * ROW_H + ROW_H / 2.0 + 3.0,
            None => y + HEAD_H / 2.0,
        };
        (x, y)
    };

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width:.0}" height="{total_h:.0}" viewBox="0 0 {width:.0} {total_h:.0}" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="12">"#,
        escape(label)
    );
    out.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#7a8699"/></marker></defs>"##);
    out.push_str(r#"<g class="edges">"#);
    for e in edges {
        let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) else {
            continue;
        };
        let (x1, y1) = anchor(a, &e.from_row, true);
        let (x2, y2) = anchor(b, &e.to_row, false);
        let dx = ((x2 - x1).abs() / 2.0).max(40.0);
        let _ = write!(
            out,
            r##"<path class="edge {}" data-from="{}" data-from-row="{}" data-to="{}" data-to-row="{}" d="M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}" fill="none" stroke="#7a8699" stroke-width="1.4"{} marker-end="url(#arrow)"/>"##,
            escape(&e.class),
            escape(&e.from),
            escape(e.from_row.as_deref().unwrap_or("")),
            escape(&e.to),
            escape(e.to_row.as_deref().unwrap_or("")),
            x1 + dx,
            x2 - dx,
            if e.dashed {
                r#" stroke-dasharray="5 4""#
            } else {
                ""
            },
        );
    }
    out.push_str("</g><g class=\"nodes\">");
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = xy[i];
        let h = height(n);
        let _ = write!(
            out,
            r##"<g class="node {}" data-node="{}" tabindex="0" role="button" aria-label="{}"><title>{}</title><rect x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{h:.1}" rx="6" fill="#ffffff" stroke="#4b5a70" stroke-width="1.2"/><rect class="head" x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{HEAD_H}" rx="6" fill="#e8eef7" stroke="#4b5a70" stroke-width="1.2"/><text x="{:.1}" y="{:.1}" font-weight="600" fill="#1b2330">{}</text>"##,
            escape(&n.class),
            escape(&n.id),
            escape(&n.title),
            escape(&n.title),
            x + 10.0,
            y + HEAD_H / 2.0 + 4.0,
            escape(&clip(&n.title)),
        );
        for (k, r) in n.rows.iter().enumerate() {
            let ry = y + HEAD_H + 3.0 + k as f64 * ROW_H;
            let _ = write!(
                out,
                r##"<g class="row" data-node="{}" data-row="{}" tabindex="0" role="button" aria-label="{} {}"><title>{}</title><rect x="{:.1}" y="{ry:.1}" width="{:.1}" height="{ROW_H}" fill="transparent"/><text x="{:.1}" y="{:.1}" fill="#33404f">{}</text></g>"##,
                escape(&n.id),
                escape(r),
                escape(&n.title),
                escape(r),
                escape(r),
                x + 1.0,
                NODE_W - 2.0,
                x + 14.0,
                ry + ROW_H / 2.0 + 4.0,
                escape(&clip(if r.is_empty() { "(rows)" } else { r })),
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</g></svg>");
    out
}

/// Draw lineage edges: a box per dataset with the columns that appear,
/// `""` (the rows) first, or with `columns` false one plain box per
/// dataset and one arrow per pair. Indirect edges (join, filter, group
/// by…) are dashed; at dataset level an arrow is dashed when every edge
/// it stands for is.
pub fn lineage(label: &str, edges: &[LineageEdge], columns: bool) -> String {
    if !columns {
        let mut pairs: BTreeMap<(&str, &str), bool> = BTreeMap::new();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for e in edges {
            names.insert(&e.source_dataset);
            names.insert(&e.target_dataset);
            let direct = is_direct(e);
            *pairs
                .entry((&e.source_dataset, &e.target_dataset))
                .or_insert(false) |= direct;
        }
        let nodes: Vec<Node> = names
            .iter()
            .map(|d| Node {
                id: d.to_string(),
                title: d.to_string(),
                rows: Vec::new(),
                class: "dataset".into(),
            })
            .collect();
        let arrows: Vec<Edge> = pairs
            .iter()
            .map(|((f, t), direct)| Edge {
                from: f.to_string(),
                from_row: None,
                to: t.to_string(),
                to_row: None,
                dashed: !direct,
                class: String::new(),
            })
            .collect();
        return render(label, &nodes, &arrows);
    }
    let mut cols: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        cols.entry(&e.source_dataset)
            .or_default()
            .insert(&e.source_field);
        cols.entry(&e.target_dataset)
            .or_default()
            .insert(&e.target_field);
    }
    let nodes: Vec<Node> = cols
        .iter()
        .map(|(d, c)| Node {
            id: d.to_string(),
            title: d.to_string(),
            rows: c.iter().map(|s| s.to_string()).collect(),
            class: "dataset".into(),
        })
        .collect();
    let mut seen = BTreeSet::new();
    let arrows: Vec<Edge> = edges
        .iter()
        .filter(|e| {
            seen.insert((
                &e.source_dataset,
                &e.source_field,
                &e.target_dataset,
                &e.target_field,
            ))
        })
        .map(|e| Edge {
            from: e.source_dataset.clone(),
            from_row: Some(e.source_field.clone()),
            to: e.target_dataset.clone(),
            to_row: Some(e.target_field.clone()),
            dashed: !is_direct(e),
            class: e.subtypes.join(" ").to_lowercase(),
        })
        .collect();
    render(label, &nodes, &arrows)
}

fn is_direct(e: &LineageEdge) -> bool {
    e.subtypes
        .iter()
        .all(|s| matches!(s.as_str(), "IDENTITY" | "TRANSFORMATION" | "AGGREGATION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(sd: &str, sf: &str, td: &str, tf: &str, sub: &str) -> LineageEdge {
        LineageEdge {
            target_dataset: td.into(),
            target_field: tf.into(),
            source_dataset: sd.into(),
            source_field: sf.into(),
            subtypes: vec![sub.into()],
            pipeline: "p".into(),
            task_id: "t".into(),
            run_id: "r".into(),
            updated_ms: 0,
        }
    }

    #[test]
    fn lineage_is_layered_escaped_and_deterministic() {
        let edges = vec![
            edge("raw:orders/*.csv", "id", "sales.orders", "id", "IDENTITY"),
            edge(
                "sales.orders",
                "id",
                "analytics.c360",
                "orders",
                "AGGREGATION",
            ),
            edge(
                "sales.orders",
                "customer_id",
                "analytics.c360",
                "",
                "GROUP_BY",
            ),
            edge("a<b", "x&y", "sales.orders", "id", "FILTER"),
        ];
        let svg = lineage("lineage of analytics.c360", &edges, true);
        assert_eq!(svg, lineage("lineage of analytics.c360", &edges, true));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("data-node=\"a&lt;b\""));
        assert!(svg.contains("data-row=\"x&amp;y\""));
        assert!(!svg.contains("<style") && !svg.contains("<script"));
        // Sources sit left of what they feed.
        let x_of = |id: &str| -> f64 {
            let at = svg.find(&format!("data-node=\"{id}\" tabindex")).unwrap();
            let rest = &svg[at..];
            let x = rest.find(" x=\"").unwrap() + 4;
            rest[x..x + rest[x..].find('"').unwrap()].parse().unwrap()
        };
        assert!(x_of("raw:orders/*.csv") < x_of("sales.orders"));
        assert!(x_of("sales.orders") < x_of("analytics.c360"));
        // Indirect edges are dashed, direct ones are not.
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
        // Dataset level: one arrow per pair, no rows.
        let flat = lineage("l", &edges, false);
        assert_eq!(flat.matches("<path class=\"edge").count(), 3);
        assert!(!flat.contains("class=\"row\""));
    }

    #[test]
    fn cycles_terminate() {
        let nodes: Vec<Node> = ["a", "b"]
            .iter()
            .map(|id| Node {
                id: id.to_string(),
                title: id.to_string(),
                rows: vec![],
                class: String::new(),
            })
            .collect();
        let e = |f: &str, t: &str| Edge {
            from: f.into(),
            from_row: None,
            to: t.into(),
            to_row: None,
            dashed: false,
            class: String::new(),
        };
        let svg = render("g", &nodes, &[e("a", "b"), e("b", "a"), e("a", "a")]);
        assert_eq!(svg.matches("<path class=\"edge").count(), 3);
    }
}
