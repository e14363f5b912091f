//! A fake chat robot for the end-to-end latency measurement: a minimal HTTP/1.1 server that
//! answers every POST with DingTalk's success (`200`, `{"errcode":0,"errmsg":"ok"}`) and
//! hands each request body, stamped with the instant it was read completely, to the
//! benchmark. Hand-written on tokio so the harness needs no server framework; it speaks only
//! what a webhook client sends (Content-Length bodies, keep-alive).

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::error::{BenchError, Result};

const ANSWER: &str = "{\"errcode\":0,\"errmsg\":\"ok\"}";
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One received message.
#[derive(Debug)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub body: String,
}

/// The running robot: its URL and the messages it received.
pub struct Robot {
    pub url: String,
    pub messages: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Robot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Robot {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> Result<Robot> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BenchError::io("127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::io("127.0.0.1:0", e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, tx).await {
                        tracing::debug!(error = %e, "robot connection ended");
                    }
                });
            }
        });
        Ok(Robot {
            url: format!("http://{addr}/robot/send?access_token=bench"),
            messages: rx,
            task,
        })
    }
}

/// Length of the head (through the blank line), if `buf` holds all of it.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The request line's path and the Content-Length of a request head.
fn parse_head(head: &str) -> std::result::Result<(String, usize), String> {
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (Some(_method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(format!("bad request line {request:?}"));
    };
    let mut length = 0;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?;
            } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err("chunked bodies are not supported by the fake robot".into());
            }
        }
    }
    if length > MAX_BODY {
        return Err(format!("body of {length} bytes"));
    }
    Ok((path.to_string(), length))
}

async fn serve(mut stream: TcpStream, tx: mpsc::UnboundedSender<Received>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        // the head
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                return Err(std::io::Error::other("request head too long"));
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(()); // closed between requests
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let (path, length) = match parse_head(&head) {
            Ok(v) => v,
            Err(e) => {
                let msg = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{e}",
                    e.len()
                );
                stream.write_all(msg.as_bytes()).await?;
                return Ok(());
            }
        };
        while buf.len() < end + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed inside a body"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let at = Instant::now();
        let body = String::from_utf8_lossy(&buf[end..end + length]).into_owned();
        buf.drain(..end + length);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        // the benchmark may have stopped listening: the robot still answers
        let _ = tx.send(Received { at, path, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_errcode_zero_and_reports_each_message() {
        let mut robot = Robot::start().await.unwrap();
        let client = reqwest::Client::new();
        for i in 0..3 {
            let r = client
                .post(&robot.url)
                .json(&serde_json::json!({"msgtype": "markdown", "markdown": {"title": "t", "text": format!("trial-{i} 告警")}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["errcode"], 0);
            let got = robot.messages.recv().await.unwrap();
            assert_eq!(got.path, "/robot/send?access_token=bench");
            assert!(
                got.body.contains(&format!("trial-{i} 告警")),
                "{}",
                got.body
            );
        }
    }

    #[test]
    fn heads_are_parsed() {
        let (path, len) =
            parse_head("POST /x?y=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 12\r\n\r\n").unwrap();
        assert_eq!((path.as_str(), len), ("/x?y=1", 12));
        assert!(parse_head("POST /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n").is_err());
        assert!(parse_head("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head("garbage").is_err());
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
