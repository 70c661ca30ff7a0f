//! Counterexamples: where the search for a linearization got stuck, for a person to read.
//!
//! The search reports its deepest dead end: the longest linearizable prefix it reached, the state
//! after it, and the operations that could come next (every pending operation called before the
//! first completion still ahead). Each of them is either impossible in that state (the model says
//! what it would have needed) or possible but leads only to dead ends already explored. One of them,
//! the *blocking* operation, completed at the end of the window, so something had to be linearized
//! by then. The window of the timeline around these operations is rendered as text and as a
//! self-contained HTML page.

use std::fmt::{self, Write as _};

use super::search::{PartOperation, Stuck};
use crate::history::OpId;
use crate::model::Model;

/// How many of the last linearized operations a counterexample shows.
const PREFIX_TAIL_SHOWN_MAX: usize = 6;
/// How many operations the timeline window shows at most.
const WINDOW_OPERATIONS_MAX: usize = 400;

/// A non-linearizable history explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The partition (key) that failed, when the history was split.
    pub partition: Option<String>,
    /// Operations in that partition (failed ones dropped).
    pub operations_count: usize,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<OpId>,
    /// The model state after the prefix.
    pub prefix_state: String,
    /// The operations that could have come next, none of which leads to a linearization.
    pub candidates: Vec<Candidate>,
    /// The candidate whose completion closes the window: something had to take effect by then.
    pub blocking: OpId,
    /// The operations around the failure, in call order, for the timeline.
    pub window: Vec<OperationView>,
}

/// An operation that could have been linearized next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The operation.
    pub id: OpId,
    /// Whether the model accepts it after the prefix (it then leads only to dead ends).
    pub possible: bool,
    /// Why not, or the state it would lead to.
    pub explanation: String,
}

/// One operation as the timeline shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationView {
    /// The operation.
    pub id: OpId,
    /// Its process.
    pub process: u64,
    /// The model's description, e.g. `write 3`.
    pub description: String,
    /// Event index of its call.
    pub call_time: u64,
    /// Event index of its completion; `None` when the outcome is unknown.
    pub return_time: Option<u64>,
    /// Its position in the linearized prefix, if it is in it.
    pub linearized_position: Option<usize>,
}

pub(super) fn build<M: Model>(
    model: &M,
    partition: Option<&str>,
    operations: &[PartOperation<'_, M>],
    stuck: &Stuck<M::State>,
) -> Counterexample {
    let candidates: Vec<Candidate> = stuck
        .candidates
        .iter()
        .map(|&index| {
            let operation = &operations[index];
            match model.step(&stuck.state, operation.input, operation.output) {
                Some(next) => Candidate {
                    id: operation.id,
                    possible: true,
                    explanation: format!(
                        "possible (state becomes {}), but every order after it fails",
                        model.describe_state(next.as_ref())
                    ),
                },
                None => Candidate {
                    id: operation.id,
                    possible: false,
                    explanation: format!(
                        "impossible: {}",
                        model.explain_rejection(&stuck.state, operation.input, operation.output)
                    ),
                },
            }
        })
        .collect();

    let mut position_of = vec![None; operations.len()];
    for (position, &index) in stuck.prefix.iter().enumerate() {
        position_of[index] = Some(position);
    }
    let finite_end = operations
        .iter()
        .map(|operation| operation.return_time)
        .filter(|&time| time != u64::MAX)
        .chain(operations.iter().map(|operation| operation.call_time))
        .max()
        .unwrap_or(0);
    let blocking_return = operations[stuck.blocking].return_time.min(finite_end);
    let tail_start = stuck.prefix.len().saturating_sub(PREFIX_TAIL_SHOWN_MAX);
    let window_start = stuck.prefix[tail_start..]
        .iter()
        .chain(&stuck.candidates)
        .map(|&index| operations[index].call_time)
        .min()
        .unwrap_or(0);
    let mut window: Vec<OperationView> = operations
        .iter()
        .enumerate()
        .filter(|(_, operation)| {
            operation.call_time <= blocking_return && operation.return_time >= window_start
        })
        .map(|(index, operation)| OperationView {
            id: operation.id,
            process: operation.process,
            description: model.describe_operation(operation.input, operation.output),
            call_time: operation.call_time,
            return_time: (operation.return_time != u64::MAX).then_some(operation.return_time),
            linearized_position: position_of[index],
        })
        .collect();
    if window.len() > WINDOW_OPERATIONS_MAX {
        window.drain(..window.len() - WINDOW_OPERATIONS_MAX);
    }
    Counterexample {
        partition: partition.map(str::to_string),
        operations_count: operations.len(),
        prefix: stuck.prefix.iter().map(|&index| operations[index].id).collect(),
        prefix_state: model.describe_state(&stuck.state),
        candidates,
        blocking: operations[stuck.blocking].id,
        window,
    }
}

impl Counterexample {
    fn view(&self, id: OpId) -> Option<&OperationView> {
        self.window.iter().find(|view| view.id == id)
    }

    fn describe(&self, id: OpId) -> String {
        match self.view(id) {
            Some(view) => format!(
                "#{} p{} {} [{}..{}]",
                id.0,
                view.process,
                view.description,
                view.call_time,
                view.return_time.map_or("?".to_string(), |time| time.to_string())
            ),
            None => format!("#{}", id.0),
        }
    }

    /// The counterexample as a self-contained HTML page with a timeline of the window.
    pub fn to_html(&self, title: &str) -> String {
        let mut html = String::new();
        let _ = write!(
            html,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\n\
             body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}\n\
             pre{{background:#f6f6f6;padding:1em;overflow:auto}}\n\
             .legend span{{display:inline-block;padding:2px 8px;margin-right:8px;border-radius:3px}}\n\
             svg text{{font-size:11px;font-family:monospace}}\n\
             </style></head><body>\n<h1>Not linearizable: {}</h1>\n",
            escape(title),
            escape(title)
        );
        html.push_str(
            "<p class=\"legend\"><span style=\"background:#9fd89f\">linearized prefix (order)</span>\
             <span style=\"background:#f08a8a\">impossible next</span>\
             <span style=\"background:#f5d36b\">possible next, dead end</span>\
             <span style=\"background:#d0d0d0\">other</span>\
             dashed end: outcome unknown. Hover a bar for details.</p>\n",
        );
        html.push_str(&self.timeline_svg());
        let _ = write!(
            html,
            "\n<h2>Report</h2>\n<pre>{}</pre>\n</body></html>\n",
            escape(&self.to_string())
        );
        html
    }

    fn timeline_svg(&self) -> String {
        let mut processes: Vec<u64> = self.window.iter().map(|view| view.process).collect();
        processes.sort_unstable();
        processes.dedup();
        let start = self.window.iter().map(|view| view.call_time).min().unwrap_or(0);
        let end = self
            .window
            .iter()
            .map(|view| view.return_time.unwrap_or(view.call_time))
            .chain(self.window.iter().map(|view| view.call_time))
            .max()
            .unwrap_or(0)
            + 2;
        let label_width = 60.0;
        let width = 1400.0_f64;
        let row_height = 26.0;
        let scale = (width - label_width - 20.0) / ((end - start).max(1) as f64);
        let x = |time: u64| label_width + (time.saturating_sub(start)) as f64 * scale;
        let height = row_height * processes.len() as f64 + 30.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\">"
        );
        for (row, process) in processes.iter().enumerate() {
            let y = row as f64 * row_height + 20.0;
            let _ = writeln!(
                svg,
                "<text x=\"2\" y=\"{:.1}\">p{process}</text><line x1=\"{label_width}\" y1=\"{:.1}\" \
                 x2=\"{width}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
                y + 14.0,
                y + row_height - 2.0,
                y + row_height - 2.0
            );
        }
        for view in &self.window {
            let row = processes.binary_search(&view.process).unwrap_or(0);
            let y = row as f64 * row_height + 20.0;
            let candidate = self.candidates.iter().find(|candidate| candidate.id == view.id);
            let (fill, note) = match (view.linearized_position, candidate) {
                (Some(position), _) => ("#9fd89f", format!("linearized #{}", position + 1)),
                (None, Some(candidate)) if candidate.possible => {
                    ("#f5d36b", candidate.explanation.clone())
                }
                (None, Some(candidate)) => ("#f08a8a", candidate.explanation.clone()),
                (None, None) => ("#d0d0d0", "not reached".to_string()),
            };
            let left = x(view.call_time);
            let right = x(view.return_time.unwrap_or(end)).max(left + 4.0);
            let dash = if view.return_time.is_none() { " stroke-dasharray=\"4 2\"" } else { "" };
            let border = if view.id == self.blocking { "#b00" } else { "#555" };
            let label = match view.linearized_position {
                Some(position) => format!("{}. {}", position + 1, view.description),
                None => view.description.clone(),
            };
            let _ = writeln!(
                svg,
                "<g><title>#{} p{} {} [{}..{}]: {}</title><rect x=\"{left:.1}\" y=\"{y:.1}\" \
                 width=\"{:.1}\" height=\"{:.1}\" rx=\"3\" fill=\"{fill}\" stroke=\"{border}\"{dash}/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
                view.id.0,
                view.process,
                escape(&view.description),
                view.call_time,
                view.return_time.map_or("?".to_string(), |time| time.to_string()),
                escape(&note),
                right - left,
                row_height - 6.0,
                left + 3.0,
                y + 14.0,
                escape(&label)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

impl fmt::Display for Counterexample {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.partition {
            Some(key) => writeln!(formatter, "not linearizable: key {key:?}")?,
            None => writeln!(formatter, "not linearizable")?,
        }
        writeln!(
            formatter,
            "  the longest linearizable prefix has {} of {} operations; state after it: {}",
            self.prefix.len(),
            self.operations_count,
            self.prefix_state
        )?;
        if !self.prefix.is_empty() {
            let tail_start = self.prefix.len().saturating_sub(PREFIX_TAIL_SHOWN_MAX);
            writeln!(formatter, "  its last operations, in linearization order:")?;
            for (position, &id) in self.prefix.iter().enumerate().skip(tail_start) {
                writeln!(formatter, "    {:>4}. {}", position + 1, self.describe(id))?;
            }
        }
        writeln!(
            formatter,
            "  {} must take effect by its completion, but none of these {} operations can come next:",
            self.describe(self.blocking),
            self.candidates.len()
        )?;
        for candidate in &self.candidates {
            writeln!(formatter, "    {}: {}", self.describe(candidate.id), candidate.explanation)?;
        }
        write!(formatter, "  (times are event indices; [call..completion], ? = unknown outcome)")
    }
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(character),
        }
    }
    escaped
}
