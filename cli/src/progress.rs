//! Progress on stderr from the orchestrator's events: a spinner per resource on a
//! terminal, one plain line per event otherwise (CI logs), nothing with `-q`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use triad_core::events::{Event, Observer, Resource};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Silent,
}

/// The observer handed to the orchestrator.
pub(crate) struct Progress {
    mode: Mode,
    bars: MultiProgress,
    by_resource: Mutex<HashMap<Resource, ProgressBar>>,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise; nothing when `quiet`.
    pub(crate) fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Self {
            mode,
            bars: MultiProgress::new(),
            by_resource: Mutex::new(HashMap::new()),
        }
    }

    /// Whether anything is shown at all.
    pub(crate) fn is_silent(&self) -> bool {
        self.mode == Mode::Silent
    }

    fn bar(&self, resource: &Resource) -> ProgressBar {
        let mut map = self.by_resource.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(resource.clone())
            .or_insert_with(|| {
                let bar = self.bars.add(ProgressBar::new_spinner());
                if let Ok(style) =
                    ProgressStyle::with_template("{spinner:.cyan} {prefix:<34} {msg} ({elapsed})")
                {
                    bar.set_style(style);
                }
                bar.set_prefix(resource.to_string());
                bar.enable_steady_tick(Duration::from_millis(100));
                bar
            })
            .clone()
    }

    /// Finish and remove every bar (before printing results).
    pub(crate) fn finish(&self) {
        let mut map = self.by_resource.lock().unwrap_or_else(|e| e.into_inner());
        for (_, bar) in map.drain() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
        let _ = self.bars.clear();
    }

    fn line(event: &Event) -> String {
        match event {
            Event::Discovering => "discovering what exists".to_owned(),
            Event::Started { resource, step } => format!("{resource}: {step}…"),
            Event::Finished {
                resource,
                step,
                detail: Some(d),
            } => format!("{resource}: {step} ✔ ({d})"),
            Event::Finished { resource, step, .. } => format!("{resource}: {step} ✔"),
            Event::Failed {
                resource,
                step,
                error,
            } => format!("{resource}: {step} FAILED: {error}"),
            Event::Unchanged { resource } => format!("{resource}: unchanged"),
        }
    }
}

impl Observer for Progress {
    fn on_event(&self, event: &Event) {
        match self.mode {
            Mode::Silent => {}
            Mode::Lines => eprintln!("{}", Self::line(event)),
            Mode::Bars => match event {
                Event::Discovering => {}
                Event::Started { resource, step } => {
                    let bar = self.bar(resource);
                    if bar.is_finished() {
                        bar.reset();
                        bar.enable_steady_tick(Duration::from_millis(100));
                    }
                    bar.set_message(format!("{step}…"));
                }
                Event::Finished {
                    resource,
                    step,
                    detail,
                } => self.bar(resource).finish_with_message(match detail {
                    Some(d) => format!("✔ {step}: {d}"),
                    None => format!("✔ {step}"),
                }),
                Event::Failed {
                    resource,
                    step,
                    error,
                } => self
                    .bar(resource)
                    .abandon_with_message(format!("✘ {step}: {error}")),
                Event::Unchanged { resource } => {
                    self.bar(resource).finish_with_message("unchanged")
                }
            },
        }
    }
}
