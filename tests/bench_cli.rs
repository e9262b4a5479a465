//! The benchmark commands refuse bad options with a reason, before they look
//! for a device.

mod cli_support;

use cli_support::nyxq;

#[test]
fn bench_vk_matvec_refuses_bad_options() {
    for (args, reason) in [
        (&["--batches", "0,9"][..], "is not a list of 1 to 8"),
        (&["--batches", "1,x"][..], "is not a list of 1 to 8"),
        (&["--batches"][..], "--batches needs a list"),
        (
            &["--variant", "fast"][..],
            "--variant needs f32, dot or both",
        ),
        (&["--json"][..], "--json needs a file"),
        (&["--iterations", "many"][..], "--iterations needs a number"),
        (&["--frobnicate"][..], "unknown option '--frobnicate'"),
    ] {
        let mut all = vec!["bench-vk-matvec"];
        all.extend_from_slice(args);
        let (ok, _, err) = nyxq(&all);
        assert!(!ok && err.contains(reason), "{args:?}: {err}");
    }
}
