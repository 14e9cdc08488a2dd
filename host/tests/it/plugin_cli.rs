//! `ferrox plugin new|build|test|inspect` through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::lang_filters::{example_filter, repo_root};

fn ferrox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrox"))
        .args(args)
        .output()
        .expect("run ferrox")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `plugin build DIR` then `plugin test` with the scaffold's own fixtures: all pass.
fn build_and_test(root: &Path, name: &str, cmd: impl Fn(&[&str]) -> Output) {
    let out = cmd(&["plugin", "build", s(root)]);
    assert!(out.status.success(), "build: {}", show(&out));
    let wasm = PathBuf::from(text(&out.stdout).trim());
    assert_eq!(wasm, root.join("build").join(format!("{name}.wasm")));
    assert!(wasm.is_file());
    let fixtures = root.join("fixtures.yaml");
    let out = cmd(&["plugin", "test", s(&wasm), "--request", s(&fixtures)]);
    assert!(out.status.success(), "test: {}", show(&out));
    assert!(
        text(&out.stdout).contains("3 passed, 0 failed"),
        "{}",
        show(&out)
    );
}

#[test]
fn plugin_new_python_and_js_scaffolds_build_and_pass_their_fixtures() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    for (lang, name) in [("python", "py-gate"), ("js", "js-gate")] {
        let out = ferrox(&[
            "plugin",
            "new",
            name,
            "--lang",
            lang,
            "--dir",
            s(dir.path()),
        ]);
        assert!(out.status.success(), "{}", show(&out));
        assert!(text(&out.stdout).contains("ferrox plugin build"));
        let root = dir.path().join(name);
        build_and_test(&root, name, ferrox);
        // The scaffold imports no host service, so it needs no grant.
        let out = ferrox(&[
            "plugin",
            "inspect",
            s(&root.join(format!("build/{name}.wasm"))),
        ]);
        assert!(out.status.success(), "{}", show(&out));
        assert!(
            text(&out.stdout).contains("host services imported (grants it needs): []"),
            "{}",
            show(&out)
        );
    }
}

#[test]
fn plugin_new_rust_scaffold_builds_with_plugin_build_and_passes_its_fixtures() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let out = ferrox(&["plugin", "new", "rs-gate", "--dir", s(dir.path())]);
    assert!(out.status.success(), "{}", show(&out));
    // A cached target directory keeps repeated runs quick.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("scaffold");
    build_and_test(&dir.path().join("rs-gate"), "rs-gate", |args| {
        Command::new(env!("CARGO_BIN_EXE_ferrox"))
            .args(args)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("run ferrox")
    });
}

#[test]
fn plugin_test_runs_the_example_fixtures_and_reports_a_diff_on_mismatch() {
    for (lang, name) in [("python", "hmac-verify"), ("js", "tenant-router")] {
        let wasm = example_filter(lang, name);
        let fixtures = repo_root()
            .join("examples/filters")
            .join(lang)
            .join(name)
            .join("fixtures.yaml");
        let out = ferrox(&["plugin", "test", s(&wasm), "--request", s(&fixtures)]);
        assert!(out.status.success(), "{name}: {}", show(&out));
        assert!(text(&out.stdout).contains(" 0 failed"), "{}", show(&out));
    }

    // Wrong expectations: exit 1, each difference spelled out.
    let dir = tempfile::TempDir::new().expect("temp dir");
    let fixtures = dir.path().join("wrong.yaml");
    std::fs::write(
        &fixtures,
        "plugin:\n  timeout: 200ms\n  memory: 32MiB\n  config: { tenants: { acme: { shard: eu-1 } } }\ncases:\n  - name: status and upstream header differ\n    request: { headers: { x-tenant: acme } }\n    response: { status: 200 }\n    expect:\n      outcome: continue\n      upstream: { headers: { x-tenant-shard: us-9 }, absent: [x-tenant-id] }\n      status: 201\n  - name: outcome differs\n    request: { headers: { x-tenant: nobody } }\n    expect: { outcome: continue }\n  - name: this one passes\n    request: { headers: { x-tenant: nobody } }\n    expect: { outcome: respond, status: 403 }\n",
    )
    .expect("write fixtures");
    let wasm = example_filter("js", "tenant-router");
    let out = ferrox(&["plugin", "test", s(&wasm), "--request", s(&fixtures)]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = text(&out.stdout);
    for line in [
        "FAIL  status and upstream header differ",
        "upstream header x-tenant-shard: expected \"us-9\", got Some(\"eu-1\")",
        "upstream header x-tenant-id: expected absent, got \"acme\"",
        "status: expected 201, got 200",
        "FAIL  outcome differs",
        "outcome: expected Continue, got Respond",
        "(the filter answered 403)",
        "ok    this one passes",
        "1 passed, 2 failed",
    ] {
        assert!(report.contains(line), "missing {line:?} in\n{report}");
    }

    // A malformed fixture file names the field.
    std::fs::write(
        &fixtures,
        "cases:\n  - name: x\n    expect: { outcome: maybe }\n",
    )
    .expect("write fixtures");
    let out = ferrox(&["plugin", "test", s(&wasm), "--request", s(&fixtures)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cases[0].expect.outcome"),
        "{}",
        show(&out)
    );
}

#[test]
fn plugin_test_signs_fresh_requests_for_the_python_hmac_filter() {
    // A signature made now, in a fixture written now: the filter accepts it, names the
    // consumer and removes the signature headers.
    let wasm = example_filter("python", "hmac-verify");
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sig = crate::lang_filters::hmac_sha256(
        b"partner-a-shared-secret",
        format!("{ts}\nPOST\n/orders\n").as_bytes(),
    );
    let dir = tempfile::TempDir::new().expect("temp dir");
    let fixtures = dir.path().join("signed.yaml");
    std::fs::write(
        &fixtures,
        format!(
            "plugin:\n  grants: [log, clock]\n  timeout: 200ms\n  memory: 32MiB\n  config: {{ keys: {{ partner-a: partner-a-shared-secret }} }}\ncases:\n  - name: signed\n    request:\n      method: POST\n      path: /orders\n      headers: {{ x-signature-key: partner-a, x-signature-timestamp: \"{ts}\", x-signature: v1={sig} }}\n    expect:\n      outcome: continue\n      upstream: {{ consumer: partner-a, absent: [x-signature, x-signature-key, x-signature-timestamp] }}\n  - name: the same signature on GET is refused\n    request:\n      path: /orders\n      headers: {{ x-signature-key: partner-a, x-signature-timestamp: \"{ts}\", x-signature: v1={sig} }}\n    expect: {{ outcome: respond, status: 401, body: bad signature }}\n  - name: fault injection is off by default\n    request: {{ headers: {{ x-ferrox-fault: raise }} }}\n    expect: {{ outcome: respond, status: 401 }}\n  - name: a raised exception is a trap\n    config: {{ keys: {{ a: partner-a-shared-secret }}, fault_injection: true }}\n    request: {{ headers: {{ x-ferrox-fault: raise }} }}\n    expect: {{ outcome: trap }}\n  - name: a loop hits the deadline\n    config: {{ keys: {{ a: partner-a-shared-secret }}, fault_injection: true }}\n    request: {{ headers: {{ x-ferrox-fault: loop }} }}\n    expect: {{ outcome: timeout }}\n"
        ),
    )
    .expect("write fixtures");
    let out = ferrox(&["plugin", "test", s(&wasm), "--request", s(&fixtures)]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("5 passed, 0 failed"),
        "{}",
        show(&out)
    );
}

#[test]
fn plugin_inspect_shows_imports_exports_and_acceptance() {
    let wasm = example_filter("python", "hmac-verify");
    let out = ferrox(&["plugin", "inspect", s(&wasm)]);
    assert!(out.status.success(), "{}", show(&out));
    let report = text(&out.stdout);
    for line in [
        "world: ferrox:filter@0.1.0",
        "  init (func)",
        "  on-request (func)",
        "  on-response (func)",
        "host services imported (grants it needs): [clock, log]",
        "wasi:filesystem/preopens@",
        "no preopened directories: no files",
        "wasi:sockets/tcp@",
        "every address denied: no network",
        "accepted: yes",
    ] {
        assert!(report.contains(line), "missing {line:?} in\n{report}");
    }

    // Fewer grants than it needs: refused, naming the service; a config `init` rejects too.
    let out = ferrox(&["plugin", "inspect", s(&wasm), "--grants", "log"]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report.contains("accepted: no") && report.contains("`clock`"),
        "{report}"
    );
    let out = ferrox(&[
        "plugin",
        "inspect",
        s(&wasm),
        "--config",
        r#"{"keys": {"a": "short"}}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("init rejected the config"),
        "{}",
        show(&out)
    );

    // Not a component at all.
    let dir = tempfile::TempDir::new().expect("temp dir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").expect("write");
    let out = ferrox(&["plugin", "inspect", s(&junk)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a valid WebAssembly component"),
        "{}",
        show(&out)
    );
}

#[test]
fn plugin_build_explains_a_folder_that_is_no_filter_project() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let out = ferrox(&["plugin", "build", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a filter project"),
        "{}",
        show(&out)
    );
    // A grant that is no host service is refused before any toolchain runs.
    std::fs::write(dir.path().join("app.py"), "").expect("write");
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\n[tool.ferrox]\ngrants = [\"files\"]\n",
    )
    .expect("write");
    std::fs::create_dir_all(dir.path().join(".venv/bin")).expect("mkdir");
    std::fs::write(dir.path().join(".venv/bin/componentize-py"), "").expect("write");
    let out = ferrox(&["plugin", "build", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("`files` is not a host service"),
        "{}",
        show(&out)
    );
}
