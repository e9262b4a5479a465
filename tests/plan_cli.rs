//! `nyxq plan` on the RX 580 and Iris Xe profiles and device reports prints plans whose totals fit
//! and whose reasons are there; bad arguments fail with a message.

use crate::cli_support::nyxq;

#[test]
fn plans_print_fitting_totals_on_the_constrained_profiles() {
    for hw in [
        "amd-rx580-8gb",
        "intel-iris-xe-7gb",
        "amd-rx580--amdvlk",
        "config/devices/intel-iris-xe--mesa-anv-22.json",
    ] {
        for training in [false, true] {
            let mut args = vec![
                "plan",
                "--hardware",
                hw,
                "--model",
                "config/models/hrm-full.json",
                "--config",
                "config/hrm_config.txt",
                "--json",
            ];
            if training {
                args.push("--training");
            }
            let (ok, out, err) = nyxq(&args);
            assert!(ok, "{err}");
            let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
            // Unwrapped: Option's None compares below every Some, so a
            // missing total would pass.
            let bytes = |v: &serde_json::Value, what: &str| {
                v.as_u64()
                    .unwrap_or_else(|| panic!("{hw}: {what} is not a byte count: {v}"))
            };
            let (totals, budget) = (&plan["totals"], &plan["budget"]);
            assert!(
                bytes(&totals["device_bytes"], "totals.device_bytes")
                    <= bytes(&budget["device"], "budget.device"),
                "{hw}: {totals} over {budget}"
            );
            assert!(
                bytes(&totals["host_bytes"], "totals.host_bytes")
                    <= bytes(&budget["host"], "budget.host"),
                "{hw}: {totals} over {budget}"
            );
            for t in plan["tensors"].as_array().unwrap() {
                assert!(!t["reason"].as_str().unwrap().is_empty());
                if hw.starts_with("amd-rx580") {
                    assert_ne!(t["format"], "F16");
                }
            }
        }
        let (ok, out, _) = nyxq(&[
            "plan",
            "--hardware",
            hw,
            "--model",
            "config/models/ultra-low.json",
        ]);
        assert!(ok);
        assert!(
            out.contains("totals: device") && out.contains("decisions:"),
            "{out}"
        );
    }
}

#[test]
fn bad_arguments_fail_with_a_reason() {
    let (ok, _, err) = nyxq(&[
        "plan",
        "--hardware",
        "gtx-480",
        "--model",
        "config/models/ultra-low.json",
    ]);
    assert!(
        !ok && err.contains("unknown hardware 'gtx-480'") && err.contains("amd-rx580--amdvlk"),
        "{err}"
    );
    let (ok, _, err) = nyxq(&["plan", "--hardware", "cpu-only"]);
    assert!(!ok && err.contains("--model"), "{err}");
    let (ok, _, err) = nyxq(&["plan", "--frobnicate"]);
    assert!(!ok && err.contains("unknown option"), "{err}");
    let (ok, out, _) = nyxq(&["plan", "--list"]);
    assert!(ok && out.contains("amd-rx580-8gb") && out.contains("intel-iris-xe--mesa-anv-22"));
}
