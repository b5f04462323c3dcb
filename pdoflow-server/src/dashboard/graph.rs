//! A DAG of jobs drawn as SVG, on the server: layers from left to right
//! (each job one layer right of its furthest parent), the jobs of a layer
//! ordered to bring them near their parents and children (barycentre
//! sweeps, as layered graph drawing does), edges as curves. A few hundred
//! jobs stay readable: the picture grows and its frame scrolls. Every job
//! is a link to its page, coloured by its state, its full name in a
//! tooltip.

use std::collections::{HashMap, HashSet};

use maud::{html, Markup};
use tokio_postgres::Row;
use uuid::Uuid;

const NODE_WIDTH: i64 = 190;
const NODE_HEIGHT: i64 = 26;
const GAP_X: i64 = 60;
const GAP_Y: i64 = 10;
const MARGIN: i64 = 8;
/// Characters of a label shown in its box (the rest is in its tooltip).
const LABEL_CHARS: usize = 24;
/// Barycentre sweeps (each one down and one up).
const SWEEPS: usize = 4;

/// A job in the graph (and in the job page's lists of parents and
/// children).
#[derive(Clone)]
pub struct Node {
    pub id: Uuid,
    /// Its DAG node name, else its task.
    pub label: String,
    pub state: String,
    /// Its parents (those outside the graph are left out).
    pub parents: Vec<Uuid>,
}

impl Node {
    /// A row of `pdoflow.jobs`' `id, task, node, state, depends_on`.
    pub fn read(row: &Row) -> Result<Node, tokio_postgres::Error> {
        let task: String = row.try_get(1)?;
        let name: Option<String> = row.try_get(2)?;
        Ok(Node {
            id: row.try_get(0)?,
            label: name.unwrap_or(task),
            state: row.try_get(3)?,
            parents: row.try_get::<_, Option<Vec<Uuid>>>(4)?.unwrap_or_default(),
        })
    }
}

/// Where each node goes: its layer and its place in it.
struct Layout {
    layer: Vec<usize>,
    order: Vec<Vec<usize>>,
}

fn layout(nodes: &[Node]) -> (Layout, Vec<(usize, usize)>) {
    let index: HashMap<Uuid, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.id, i))
        .collect();
    let mut edges = Vec::new();
    let mut seen = HashSet::new();
    for (child, node) in nodes.iter().enumerate() {
        for parent in &node.parents {
            if let Some(&parent) = index.get(parent) {
                if parent != child && seen.insert((parent, child)) {
                    edges.push((parent, child));
                }
            }
        }
    }
    let mut children = vec![Vec::new(); nodes.len()];
    let mut parents = vec![Vec::new(); nodes.len()];
    let mut pending = vec![0usize; nodes.len()];
    for &(parent, child) in &edges {
        children[parent].push(child);
        parents[child].push(parent);
        pending[child] += 1;
    }
    // Longest path from the sources (Kahn's order). Jobs cannot form a
    // cycle; were one there, its jobs would stay in layer 0.
    let mut layer = vec![0usize; nodes.len()];
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut next = 0;
    while next < ready.len() {
        let node = ready[next];
        next += 1;
        for &child in &children[node] {
            layer[child] = layer[child].max(layer[node] + 1);
            pending[child] -= 1;
            if pending[child] == 0 {
                ready.push(child);
            }
        }
    }
    let layers = layer.iter().max().map_or(0, |max| max + 1);
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (node, &at) in layer.iter().enumerate() {
        order[at].push(node);
    }
    let mut position = vec![0f64; nodes.len()];
    let place = |order: &Vec<Vec<usize>>, position: &mut Vec<f64>| {
        for nodes in order {
            for (i, &node) in nodes.iter().enumerate() {
                position[node] = i as f64;
            }
        }
    };
    place(&order, &mut position);
    for _ in 0..SWEEPS {
        for (neighbours, layers) in [
            (&parents, (1..order.len()).collect::<Vec<_>>()),
            (
                &children,
                (0..order.len().saturating_sub(1)).rev().collect(),
            ),
        ] {
            for at in layers {
                let mut keyed: Vec<(f64, usize)> = order[at]
                    .iter()
                    .map(|&node| {
                        let around = &neighbours[node];
                        let key = if around.is_empty() {
                            position[node]
                        } else {
                            around.iter().map(|&n| position[n]).sum::<f64>() / around.len() as f64
                        };
                        (key, node)
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                order[at] = keyed.into_iter().map(|(_, node)| node).collect();
                for (i, &node) in order[at].iter().enumerate() {
                    position[node] = i as f64;
                }
            }
        }
    }
    (Layout { layer, order }, edges)
}

/// The graph as an `<svg id="dag">`; `current` is outlined.
pub fn svg(nodes: &[Node], current: Option<Uuid>) -> Markup {
    let (layout, edges) = layout(nodes);
    let mut row = vec![0i64; nodes.len()];
    for nodes in &layout.order {
        for (i, &node) in nodes.iter().enumerate() {
            row[node] = i as i64;
        }
    }
    let x = |node: usize| MARGIN + layout.layer[node] as i64 * (NODE_WIDTH + GAP_X);
    let y = |node: usize| MARGIN + row[node] * (NODE_HEIGHT + GAP_Y);
    let columns = layout.order.len() as i64;
    let rows = layout.order.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let width = 2 * MARGIN + columns * NODE_WIDTH + (columns - 1).max(0) * GAP_X;
    let height = 2 * MARGIN + rows * NODE_HEIGHT + (rows - 1).max(0) * GAP_Y;
    let half = NODE_HEIGHT / 2;
    html! {
        svg #dag xmlns="http://www.w3.org/2000/svg"
            width=(width) height=(height) viewBox=(format!("0 0 {width} {height}"))
            role="group" aria-label=(format!("{} jobs and {} dependencies", nodes.len(), edges.len())) {
            g.edges aria-hidden="true" {
                @for &(parent, child) in &edges {
                    @let (x1, y1) = (x(parent) + NODE_WIDTH, y(parent) + half);
                    @let (x2, y2) = (x(child), y(child) + half);
                    @let middle = (x1 + x2) / 2;
                    path.edge d=(format!("M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}")) {}
                }
            }
            @for (i, node) in nodes.iter().enumerate() {
                @let classes = format!(
                    "node state-{}{}",
                    node.state,
                    if current == Some(node.id) { " current" } else { "" }
                );
                g class=(classes) data-job-id=(node.id) {
                    a href=(format!("/dashboard/jobs/{}", node.id)) {
                        title { (node.label) " (" (node.state) ")" }
                        rect x=(x(i)) y=(y(i)) width=(NODE_WIDTH) height=(NODE_HEIGHT) rx="4" {}
                        text x=(x(i) + 8) y=(y(i) + half + 4) { (short(&node.label)) }
                    }
                }
            }
        }
    }
}

/// `label` cut to fit its box.
fn short(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        label.to_owned()
    } else {
        let mut cut: String = label.chars().take(LABEL_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

/// The states' colours, for a legend.
pub fn legend() -> Markup {
    html! {
        ul.legend aria-label="States" {
            @for state in ["blocked", "queued", "running", "succeeded", "failed", "cancelled"] {
                li { span class=(format!("swatch state-{state}")) {} (state) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u128, parents: &[u128]) -> Node {
        Node {
            id: Uuid::from_u128(n),
            label: format!("n{n}"),
            state: "queued".into(),
            parents: parents.iter().map(|&p| Uuid::from_u128(p)).collect(),
        }
    }

    #[test]
    fn each_job_is_right_of_its_furthest_parent() {
        // 1 -> 2 -> 4, 1 -> 3 -> 4, 1 -> 4
        let nodes = [
            node(1, &[]),
            node(2, &[1]),
            node(3, &[1]),
            node(4, &[2, 3, 1]),
        ];
        let (layout, edges) = layout(&nodes);
        assert_eq!(layout.layer, [0, 1, 1, 2]);
        assert_eq!(edges.len(), 5);
        assert_eq!(
            layout.order.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 2, 1]
        );
    }

    #[test]
    fn parents_outside_the_graph_are_left_out() {
        let nodes = [node(1, &[99]), node(2, &[1, 1])];
        let (layout, edges) = layout(&nodes);
        assert_eq!(edges, [(0, 1)]);
        assert_eq!(layout.layer, [0, 1]);
    }

    #[test]
    fn children_sit_near_their_parents() {
        // Two chains, listed crosswise: a1 -> b2, a2 -> b1.
        let nodes = [node(1, &[]), node(2, &[]), node(3, &[2]), node(4, &[1])];
        let (layout, _) = layout(&nodes);
        let rank = |node: usize, layer: usize| layout.order[layer].iter().position(|&n| n == node);
        assert_eq!(rank(3, 1), rank(0, 0), "{:?}", layout.order);
        assert_eq!(rank(2, 1), rank(1, 0), "{:?}", layout.order);
    }

    #[test]
    fn hundreds_of_jobs_draw_and_svg_elements_are_closed() {
        let mut nodes = vec![node(0, &[])];
        for n in 1..=300 {
            nodes.push(node(n, &[0]));
        }
        nodes.push(node(1000, &(1..=300).collect::<Vec<_>>()));
        let svg = svg(&nodes, Some(Uuid::from_u128(0))).into_string();
        assert_eq!(svg.matches("<g class=\"node").count(), 302);
        assert_eq!(svg.matches("<path").count(), 600);
        assert!(svg.contains("current"));
        assert_eq!(svg.matches("<rect").count(), svg.matches("</rect>").count());
    }

    #[test]
    fn long_labels_are_cut() {
        assert_eq!(short("short"), "short");
        assert_eq!(short(&"x".repeat(40)).chars().count(), LABEL_CHARS);
    }
}
