//! Regression: the harness never replaces a path it was handed that is not
//! a regular file. `harness serve --report /dev/null` and `harness
//! fleet-capacity` run inside a private mount namespace with a fresh
//! `/dev` holding only a `null` device, and `/dev/null` must still be a
//! character device afterwards. Skipped (with a message) where the test
//! cannot make such a namespace (no `unshare`, not root).

mod util;

use std::process::Command;

const SKIP: i32 = 77;

#[test]
fn dev_null_stays_a_character_device() {
    let script = r#"
        mount -t tmpfs devtest /dev 2>/dev/null && mknod -m 666 /dev/null c 1 3 || exit 77
        "$H" serve --model single --report /dev/null > /tmp/.listening.$$ &
        pid=$!
        for _ in $(seq 100); do grep -q listening /tmp/.listening.$$ && break; sleep 0.05; done
        kill -TERM $pid; wait $pid || { echo "serve failed"; exit 1; }
        rm -f /tmp/.listening.$$
        [ -c /dev/null ] || { echo "serve replaced /dev/null"; exit 2; }
        "$H" fleet-capacity --duration 100ms --max-clients 2 > /dev/null || { echo "fleet-capacity failed"; exit 1; }
        [ -c /dev/null ] || { echo "fleet-capacity replaced /dev/null"; exit 3; }
        echo ok
    "#;
    let out = match Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("H", util::harness_bin())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            util::cannot_run(&format!("cannot run unshare ({e})"));
            return;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(SKIP) || text.contains("unshare failed") {
        util::cannot_run(&format!(
            "no private mount namespace with a fresh /dev here ({text})"
        ));
        return;
    }
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok"), "{text}");
    // And outside, nothing changed either.
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}
