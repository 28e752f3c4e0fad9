//! Unicode through the whole engine: deltas count UTF-16 units, texts never split a char.

use dsync_engine::{ClientMsg, Config, Delta, Edit};

use crate::harness::Net;

fn sent_delta(net: &Net, i: usize) -> String {
    match net.up[i].front() {
        Some(ClientMsg::ClientSync { edits, .. }) => match &edits[0] {
            Edit::Delta { delta, .. } => delta.to_string(),
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn deltas_count_utf16_units_on_the_wire() {
    let mut net = Net::connected(2, Config::default(), "a😀b");
    net.type_at(0, 2, "é");
    net.sync(0);
    // 'a' is 1 unit, '😀' is 2: the insertion comes after 3 units, 'b' is kept after it.
    assert_eq!(sent_delta(&net, 0), "=3\t+%C3%A9\t=1");
    net.settle(10_000);
    assert_eq!(net.clients[1].engine().text(), "a😀éb");
}

#[test]
fn mixed_scripts_converge() {
    let mut net = Net::connected(3, Config::default(), "日本語 e\u{301} 👨‍👩‍👧 text");
    net.type_at(0, 0, "中文 ");
    net.type_at(1, 5, "\u{308}"); // a combining mark on its own
    let len = net.clients[2].engine().text().len_chars();
    net.type_at(2, len, " 🇫🇷");
    for i in 0..3 {
        net.sync(i);
    }
    net.settle(20_000);
    let m = net.master();
    assert!(m.starts_with("中文 日本語"));
    assert!(m.contains("\u{308}"));
    assert!(m.ends_with(" 🇫🇷"));
}

#[test]
fn crlf_is_normalised_and_converges() {
    let mut net = Net::connected(2, Config::default(), "");
    net.clients[0].set_text("one\r\ntwo\r\n").unwrap();
    net.sync(0);
    net.settle(10_000);
    assert_eq!(net.clients[1].engine().text(), "one\ntwo\n");
}

#[test]
fn python_style_delta_with_emoji_applies() {
    // diff-match-patch (JS/Java/Python 20241021) for "a😀b" -> "a😀c".
    let d = Delta::parse("=3\t-1\t+c", 100).unwrap();
    assert_eq!(d.apply("a😀b").unwrap(), "a😀c");
    // Code-point counting (old Python, Rust ports) would say =2: rejected, not misapplied.
    let d = Delta::parse("=2\t-1\t+c", 100).unwrap();
    assert!(d.apply("a😀b").is_err());
}
