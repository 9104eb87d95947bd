//! `report.html` beside summary.md: the same report as one self-contained
//! page, readable offline. summary.md rendered by pulldown-cmark, every
//! plot inlined as a data URI, the styles inlined, nothing fetched; for a
//! search, every probe behind each capacity one click away (a `<details>`
//! per capacity); and the run's capacities and cell figures as JSON in the
//! page (`<script type="application/json" id="run-data">`) for scripts. It
//! adds to summary.md and run.json; it does not replace them.

use std::fmt::Write;

use base64::Engine;
use pulldown_cmark::{Options, Parser};
use pulldown_cmark_escape::escape_html;
use record::capacity::CapacityRecord;
use record::run::RunFile;
use record::units::fmt_ns;

use crate::error::{Error, Result};
use crate::output::{Output, Rendered};
use crate::view::View;

/// The page's styles: readable tables, nothing fetched.
const STYLE: &str = "body{font-family:sans-serif;max-width:1250px;margin:1em auto;padding:0 1em;line-height:1.4}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #bbb;padding:2px 6px;text-align:right}\
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2),th:last-child,td:last-child{text-align:left}\
img{max-width:100%}details{margin:.3em 0}summary{cursor:pointer}code{background:#f3f3f3}";

/// `report.html`, into `run_dir`, after summary.md and the plots.
pub struct Html;

impl Output for Html {
    fn render(&self, view: &View<'_>, out: &mut Rendered) -> Result<()> {
        let summary = out
            .summary
            .clone()
            .unwrap_or_else(|| out.run_dir.join("summary.md"));
        let md = std::fs::read_to_string(&summary).map_err(|source| Error::Io {
            what: "read",
            path: summary.clone(),
            source,
        })?;
        let mut body = String::new();
        pulldown_cmark::html::push_html(&mut body, Parser::new_ext(&md, Options::ENABLE_TABLES));
        let link_base = crate::links::relative(&out.run_dir, &out.plots_dir);
        for plot in &out.plots {
            let Some(name) = plot.file_name() else {
                continue;
            };
            let link = link_base.join(name).display().to_string();
            let png = std::fs::read(plot).map_err(|source| Error::Io {
                what: "read",
                path: plot.clone(),
                source,
            })?;
            let data = base64::engine::general_purpose::STANDARD.encode(png);
            body = body.replace(
                &format!("src=\"{link}\""),
                &format!("src=\"data:image/png;base64,{data}\""),
            );
        }
        let run = view.run();
        if let View::Search { .. } = view {
            body.push_str(&probes(run));
        }
        let page = page(run, &body)?;
        let path = out.run_dir.join("report.html");
        common::fs::write_atomic(&path, page.as_bytes()).map_err(|source| Error::Io {
            what: "write",
            path: path.clone(),
            source,
        })?;
        out.html = Some(path);
        Ok(())
    }
}

/// `text`, escaped for HTML.
fn esc(text: &str) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = escape_html(&mut s, text);
    s
}

/// The whole page around `body`, with the run's data.
fn page(run: &RunFile, body: &str) -> Result<String> {
    let data = serde_json::json!({
        "run_id": run.run_id,
        "capacities": run.capacities,
        "cells": run.cells.iter().map(|c| serde_json::json!({
            "key": c.key,
            "status": c.verdict.status,
            "reasons": c.verdict.reasons,
            "derived": c.derived,
        })).collect::<Vec<_>>(),
    });
    let json = serde_json::to_string(&data)
        .map_err(|source| Error::Encode {
            what: "the page's data",
            source,
        })?
        // Inside <script>, "</" would end it; "<\/" is the same JSON.
        .replace("</", "<\\/");
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}\n<script type=\"application/json\" id=\"run-data\">{json}</script>\n</body></html>\n",
        esc(&format!("run {}", run.run_id))
    ))
}

/// Every probe behind each capacity, a `<details>` each.
fn probes(run: &RunFile) -> String {
    let mut html = String::from("<h2>Every probe behind each capacity</h2>\n");
    for (workload, records) in record::run::by_workload(run) {
        let _ = writeln!(html, "<h3>Workload <code>{}</code></h3>", esc(&workload));
        for r in records {
            capacity_probes(&mut html, run, r);
        }
    }
    html
}

/// One capacity's `<details>`: its probes in order, with their figures.
fn capacity_probes(html: &mut String, run: &RunFile, r: &CapacityRecord) {
    let _ = writeln!(
        html,
        "<details class=\"probes\" data-model=\"{}\" data-workload=\"{}\"><summary><code>{}</code>: {} clients at {} workers, {} probes</summary>",
        esc(&r.model),
        esc(&r.workload),
        esc(&r.model),
        esc(&r.interval.label(r.clients)),
        r.workers,
        r.probes.len()
    );
    html.push_str("<table><tr><th>#</th><th>clients</th><th>workers</th><th>outcome</th><th>round</th><th>p99</th><th>CPU us/pkt</th><th>why</th></tr>\n");
    for (i, p) in r.probes.iter().enumerate() {
        let (p99, cpu) = run
            .cells
            .get(p.cell)
            .map_or((String::new(), String::new()), |c| {
                (
                    fmt_ns(c.derived.p99_ns),
                    format!("{:.2}", c.derived.cpu_us_per_packet),
                )
            });
        let _ = writeln!(
            html,
            "<tr class=\"probe\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{p99}</td><td>{cpu}</td><td>{}</td></tr>",
            i + 1,
            p.clients,
            p.workers,
            p.outcome.name(),
            if p.confirm { "confirm" } else { "search" },
            esc(&p.why)
        );
    }
    html.push_str("</table></details>\n");
}
