//! The README's first command, as a new user runs it, in its
//! non-interactive mode: it must reach Synchronized and show what it made.

use std::process::Command;

#[test]
fn the_demo_synchronizes_the_scenario_and_shows_status_and_applications() {
    let output = Command::new(env!("CARGO_BIN_EXE_compass-demo"))
        .arg("--exit-when-synchronized")
        .output()
        .expect("the demo starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed:\n{stdout}\n{stderr}"
    );
    // The status table, healthy, with the scenario's runtime.
    assert!(stdout.contains("Synchronized (healthy)"), "{stdout}");
    assert!(stdout.contains("Runtime ID:     demo-runtime"), "{stdout}");
    // demo.yaml: one hand-written application and 20 generated ones.
    assert!(stdout.contains("Applications (21: 21 created)"), "{stdout}");
    assert!(stdout.contains("Application resources (21):"), "{stdout}");
    let (_, resources) = stdout.split_once("Application resources").unwrap();
    // Named as today's Kyma agent names it (the demo runtime has no
    // isNormalized label): the Director's `orders` is `mp-orders`.
    let orders = resources
        .lines()
        .find(|line| line.trim_start().starts_with("mp-orders "))
        .unwrap_or_else(|| panic!("no mp-orders Application in:\n{stdout}"));
    assert!(orders.contains("services  2"), "{orders}");
}
