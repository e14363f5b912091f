//! Live tail: a toggle that opens an `EventSource` on `/api/v1/logs/tail?query=...` in the
//! browser and puts each new matching record at the top of a bounded list. Closing the
//! toggle (or leaving the page, or changing the query) closes the stream. Nothing of it
//! runs on the server: the page renders with the toggle off.

use leptos::prelude::*;

use super::{LogRecord, LogRow};
use crate::i18n::tr;

/// Most lines the live list keeps; older ones fall off the bottom.
pub const MAX_LIVE_LINES: usize = 500;

/// Where the stream is.
#[derive(Clone, Debug, PartialEq)]
pub enum TailState {
    Off,
    Connecting,
    Live,
    /// The browser lost the stream and is trying again by itself.
    Reconnecting,
    /// The stream was refused or ended for good (with the reason when known).
    Closed(String),
}

/// The state badge's class and text.
pub fn state_label(s: &TailState) -> (&'static str, String) {
    match s {
        TailState::Off => ("tail-state off", String::new()),
        TailState::Connecting => ("tail-state connecting", tr("connecting…", "连接中…").into()),
        TailState::Live => ("tail-state live", tr("● live", "● 实时").into()),
        TailState::Reconnecting => (
            "tail-state connecting",
            tr("reconnecting…", "重新连接中…").into(),
        ),
        TailState::Closed(why) => (
            "tail-state closed",
            if why.is_empty() {
                tr("stream closed", "连接已关闭").to_string()
            } else {
                format!("{}: {why}", tr("stream closed", "连接已关闭"))
            },
        ),
    }
}

/// Prepends `rec` to `lines`, keeping at most [`MAX_LIVE_LINES`].
pub fn push_line(lines: &mut Vec<(u64, LogRecord)>, id: u64, rec: LogRecord) {
    lines.insert(0, (id, rec));
    lines.truncate(MAX_LIVE_LINES);
}

/// The live-tail panel for `query` (the query of the URL).
#[component]
pub fn LiveTail(#[prop(into)] query: Signal<String>) -> AnyView {
    let on = RwSignal::new(false);
    let state = RwSignal::new(TailState::Off);
    let lines = RwSignal::new(Vec::<(u64, LogRecord)>::new());
    let dropped = RwSignal::new(0u64);

    // the server renders the toggle off; only the browser opens streams
    #[cfg(not(all(feature = "hydrate", not(feature = "ssr"))))]
    let _ = query;
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        let conn = StoredValue::new(None::<send_wrapper::SendWrapper<browser::TailConn>>);
        let next_id = StoredValue::new(0u64);
        Effect::new(move |_| {
            let live = on.get();
            let q = query.get();
            // dropping the old connection closes it
            conn.set_value(None);
            if !live {
                state.set(TailState::Off);
                return;
            }
            lines.set(Vec::new());
            dropped.set(0);
            state.set(TailState::Connecting);
            let sink = browser::Sink {
                on_record: Box::new(move |rec| {
                    let id = next_id.get_value();
                    next_id.set_value(id + 1);
                    lines.update(|l| push_line(l, id, rec));
                }),
                on_dropped: Box::new(move |n| dropped.update(|d| *d += n)),
                on_state: Box::new(move |s| state.set(s)),
            };
            match browser::TailConn::open(&super::query::tail_url(&q), sink) {
                Ok(c) => conn.set_value(Some(send_wrapper::SendWrapper::new(c))),
                Err(e) => state.set(TailState::Closed(e)),
            }
        });
    }

    let toggle = move |_| on.update(|v| *v = !*v);
    view! {
        <div class="tail-bar">
            <button
                type="button"
                class=move || if on.get() { "tail-toggle on" } else { "tail-toggle" }
                aria-pressed=move || on.get().to_string()
                on:click=toggle
            >
                {move || if on.get() { tr("Stop live tail", "停止实时跟踪") } else { tr("Live tail", "实时跟踪") }}
            </button>
            // an empty text node would not survive the HTML parser, so no span when off
            {move || {
                let (class, text) = state_label(&state.get());
                (!text.is_empty()).then(|| view! { <span class=class>{text}</span> })
            }}
            {move || {
                let n = dropped.get();
                (n > 0).then(|| view! {
                    <span class="tail-dropped">
                        {format!("{} {n}", tr("batches dropped (too slow):", "批次因读取过慢被丢弃："))}
                    </span>
                })
            }}
        </div>
        {move || {
            let shown = on.get() || !lines.with(Vec::is_empty);
            shown.then(|| view! {
                <div class="tail-panel">
                    <div class="tail-head">
                        {move || format!(
                            "{} {} / {MAX_LIVE_LINES}",
                            tr("Live lines:", "实时日志："),
                            lines.with(Vec::len),
                        )}
                    </div>
                    <div class="log-list tail-list">
                        <For
                            each=move || lines.get()
                            key=|(id, _)| *id
                            children=|(_, rec)| view! { <LogRow rec=rec/> }
                        />
                    </div>
                </div>
            })
        }}
    }
    .into_any()
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
mod browser {
    //! The `EventSource` and the JS callbacks it holds.

    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use web_sys::{EventSource, MessageEvent};

    use super::{LogRecord, TailState};

    /// What the stream reports to the page.
    pub struct Sink {
        pub on_record: Box<dyn Fn(LogRecord)>,
        pub on_dropped: Box<dyn Fn(u64)>,
        pub on_state: Box<dyn Fn(TailState)>,
    }

    /// An open stream; dropping it closes the stream.
    pub struct TailConn {
        es: EventSource,
        // the callbacks must live as long as the EventSource may call them
        _log: Closure<dyn FnMut(MessageEvent)>,
        _dropped: Closure<dyn FnMut(MessageEvent)>,
        _open: Closure<dyn FnMut()>,
        _error: Closure<dyn FnMut()>,
    }

    impl TailConn {
        pub fn open(url: &str, sink: Sink) -> Result<TailConn, String> {
            let es = EventSource::new(url).map_err(|e| format!("{e:?}"))?;
            let sink = std::rc::Rc::new(sink);
            let s = sink.clone();
            let log = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                let Some(data) = ev.data().as_string() else {
                    return;
                };
                // a record the page cannot read is skipped, not fatal to the stream
                if let Ok(rec) = serde_json::from_str::<LogRecord>(&data) {
                    (s.on_record)(rec);
                }
            });
            let s = sink.clone();
            let dropped = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                #[derive(serde::Deserialize)]
                struct Dropped {
                    dropped: u64,
                }
                if let Some(d) = ev
                    .data()
                    .as_string()
                    .and_then(|d| serde_json::from_str::<Dropped>(&d).ok())
                {
                    (s.on_dropped)(d.dropped);
                }
            });
            let s = sink.clone();
            let open = Closure::<dyn FnMut()>::new(move || (s.on_state)(TailState::Live));
            let s = sink;
            let es2 = es.clone();
            let error = Closure::<dyn FnMut()>::new(move || {
                // CLOSED: the browser gave up (a refused query, a non-stream answer);
                // otherwise it reconnects by itself
                if es2.ready_state() == EventSource::CLOSED {
                    (s.on_state)(TailState::Closed(String::new()));
                } else {
                    (s.on_state)(TailState::Reconnecting);
                }
            });
            es.add_event_listener_with_callback("log", log.as_ref().unchecked_ref())
                .map_err(|e| format!("{e:?}"))?;
            es.add_event_listener_with_callback("dropped", dropped.as_ref().unchecked_ref())
                .map_err(|e| format!("{e:?}"))?;
            es.set_onopen(Some(open.as_ref().unchecked_ref()));
            es.set_onerror(Some(error.as_ref().unchecked_ref()));
            Ok(TailConn {
                es,
                _log: log,
                _dropped: dropped,
                _open: open,
                _error: error,
            })
        }
    }

    impl Drop for TailConn {
        fn drop(&mut self) {
            self.es.set_onopen(None);
            self.es.set_onerror(None);
            self.es.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(body: &str) -> LogRecord {
        LogRecord {
            body: body.into(),
            ..Default::default()
        }
    }

    #[test]
    fn live_lines_are_newest_first_and_bounded() {
        let mut lines = Vec::new();
        for i in 0..(MAX_LIVE_LINES as u64 + 5) {
            push_line(&mut lines, i, rec(&i.to_string()));
        }
        assert_eq!(lines.len(), MAX_LIVE_LINES);
        assert_eq!(lines[0].1.body, (MAX_LIVE_LINES + 4).to_string());
        assert_eq!(lines.last().map(|l| l.0), Some(5));
    }

    #[test]
    fn states_have_visible_labels() {
        assert_eq!(state_label(&TailState::Live).0, "tail-state live");
        assert!(state_label(&TailState::Live).1.contains("live"));
        assert!(state_label(&TailState::Off).1.is_empty());
        assert!(state_label(&TailState::Closed("x".into()))
            .1
            .ends_with(": x"));
    }
}
