//! Generates include/nyxq.h from src/ffi, one section per topic. Each topic
//! is a short list of src/ffi files; cbindgen reads only those files (never
//! the rest of the crate, so no library constant can reach the header) and
//! the sections are joined in the order of [`TOPICS`], each under a banner.
//! Every src/ffi file with a `#[unsafe(no_mangle)]` export must belong to
//! exactly one topic, or the build fails. Also writes OUT_DIR/abi_layout.rs
//! (see [`layout_source`]), which src/ffi/layout.rs includes.

use std::fmt::Write as _;
use std::path::Path;

/// One section of the header.
struct Topic {
    /// The banner comment above the section.
    banner: &'static str,
    /// The src/ffi files whose items the section declares, in this order.
    files: &'static [&'static str],
    /// A macro the section is conditional on (`#if defined(...)`).
    only_if: Option<&'static str>,
}

/// The header's sections, in the order a reader meets them.
const TOPICS: &[Topic] = &[
    Topic {
        banner: "Version, statuses, errors, strings and logging",
        files: &[
            "version.rs",
            "status.rs",
            "guard.rs",
            "strings.rs",
            "handle.rs",
            "log.rs",
        ],
        only_if: None,
    },
    Topic {
        banner: "Contexts",
        files: &["context.rs", "memory.rs"],
        only_if: None,
    },
    Topic {
        banner: "Formats and quantization",
        files: &["format.rs", "quant.rs"],
        only_if: None,
    },
    Topic {
        banner: "Tensors",
        files: &["tensor.rs"],
        only_if: None,
    },
    Topic {
        banner: "GGUF files",
        files: &["gguf.rs"],
        only_if: None,
    },
    Topic {
        banner: "Matrix-vector products (CPU)",
        files: &["matvec.rs"],
        only_if: None,
    },
    Topic {
        banner: "Vulkan: borrowed devices and command recording",
        files: &["vk.rs", "vk_cmd.rs", "vk_matvec.rs"],
        only_if: None,
    },
    Topic {
        banner: "Planning: models, policies, plans, configuration and hardware",
        files: &[
            "model.rs",
            "plan_policy.rs",
            "plan.rs",
            "config.rs",
            "hardware.rs",
        ],
        only_if: None,
    },
    Topic {
        banner: "Training: loss scaling, Adam and importance from activations",
        files: &["train.rs", "importance.rs", "vk_train.rs", "vk_adam.rs"],
        only_if: None,
    },
    Topic {
        banner: "Test builds only",
        files: &["test_exports.rs"],
        only_if: Some("NYXQ_TEST_EXPORTS"),
    },
];

const EXTERN_C_OPEN: &str = "#ifdef __cplusplus\nextern \"C\" {\n#endif // __cplusplus\n";
const EXTERN_C_CLOSE: &str = "#ifdef __cplusplus\n}  // extern \"C\"\n#endif  // __cplusplus\n";

/// Writes OUT_DIR/nyxq.h and OUT_DIR/abi_layout.rs; with NYXQ_UPDATE_HEADER=1
/// also include/nyxq.h.
pub fn generate(crate_dir: &Path, out_dir: &Path) {
    let ffi_dir = crate_dir.join("src/ffi");
    check_every_export_has_a_topic(&ffi_dir);
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");

    let guard = config
        .include_guard
        .clone()
        .expect("cbindgen.toml sets include_guard");
    let mut header = String::new();
    if let Some(text) = &config.header {
        header.push_str(text.trim_end());
        header.push_str("\n\n");
    }
    writeln!(header, "#ifndef {guard}\n#define {guard}\n").unwrap();
    if let Some(text) = &config.autogen_warning {
        writeln!(header, "{text}\n").unwrap();
    }
    for include in &config.sys_includes {
        writeln!(header, "#include <{include}>").unwrap();
    }
    writeln!(header, "\n{EXTERN_C_OPEN}").unwrap();

    let mut layout = Vec::new();
    for topic in TOPICS {
        let section = section(&config, &ffi_dir, topic);
        layout.extend(layout_items(&ffi_dir, topic, &section));
        writeln!(header, "/* ---- {} ---- */\n", topic.banner).unwrap();
        match topic.only_if {
            Some(define) => writeln!(header, "#if defined({define})\n{section}#endif\n").unwrap(),
            None => writeln!(header, "{section}").unwrap(),
        }
    }
    writeln!(header, "{EXTERN_C_CLOSE}\n#endif  /* {guard} */").unwrap();

    std::fs::write(out_dir.join("nyxq.h"), &header).expect("OUT_DIR is writable");
    std::fs::write(out_dir.join("abi_layout.rs"), layout_source(&layout))
        .expect("OUT_DIR is writable");
    if std::env::var("NYXQ_UPDATE_HEADER").as_deref() == Ok("1") {
        std::fs::write(crate_dir.join("include/nyxq.h"), &header)
            .expect("include/nyxq.h is writable");
    }
}

/// The declarations of one topic's files: cbindgen's output without its
/// `extern "C"` block (the header has one around everything), blank-line
/// runs squeezed, ending in one newline.
fn section(config: &cbindgen::Config, ffi_dir: &Path, topic: &Topic) -> String {
    let mut config = config.clone();
    config.header = None;
    config.include_guard = None;
    config.autogen_warning = None;
    config.sys_includes.clear();
    let mut builder = cbindgen::Builder::new().with_config(config);
    for file in topic.files {
        builder = builder.with_src(ffi_dir.join(file));
    }
    let mut raw = Vec::new();
    builder
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen cannot parse {:?}: {e}", topic.files))
        .write(&mut raw);
    let text = String::from_utf8(raw).expect("cbindgen writes UTF-8");
    let text = text.replace(EXTERN_C_OPEN, "").replace(EXTERN_C_CLOSE, "");
    let mut tidy = String::with_capacity(text.len());
    for line in text.trim().lines() {
        if !(line.is_empty() && tidy.ends_with("\n\n")) {
            tidy.push_str(line);
            tidy.push('\n');
        }
    }
    tidy
}

/// Fails the build when a src/ffi file declares part of the C API (an
/// exported function, a `#[repr]` type, a `NYXQ_` constant) but belongs to no
/// topic (it would be missing from the header), or when a file belongs to
/// several.
fn check_every_export_has_a_topic(ffi_dir: &Path) {
    let entries = std::fs::read_dir(ffi_dir).expect("src/ffi is readable");
    for entry in entries {
        let path = entry.expect("src/ffi is readable").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        let topics = TOPICS
            .iter()
            .filter(|t| t.files.contains(&name.as_str()))
            .count();
        let c_api = source.lines().any(|line| {
            ["#[unsafe(no_mangle)]", "#[repr(", "pub const NYXQ_"]
                .iter()
                .any(|mark| line.trim_start().starts_with(mark))
        });
        assert!(
            topics <= 1 && (topics == 1 || !c_api),
            "src/ffi/{name} declares part of the C API: list it in exactly one topic of build_support/header.rs"
        );
    }
}

/// A `#[repr(C)]` struct or enum of the header, with the Rust module that defines it.
enum LayoutItem {
    /// A struct: its fields, in order.
    Struct {
        module: String,
        name: String,
        fields: Vec<String>,
    },
    /// An enum: its constants' C names and Rust variant names, in order.
    Enum {
        module: String,
        name: String,
        variants: Vec<(String, String)>,
    },
}

/// A struct's fields or an enum's constants, as cbindgen declared them.
enum Declared {
    Struct(Vec<String>),
    Enum(Vec<String>),
}

/// The structs (with their fields) and enums (with their constants) of a
/// section, by C name, in order. cbindgen writes a struct as `typedef struct {`
/// .. `} Name;`, one field a line, and an enum as `enum Name` (or `typedef enum
/// {`) .. `};` (or `} Name;`), one `CONSTANT = value,` a line.
fn declared(section: &str) -> Vec<(String, Declared)> {
    let mut items = Vec::new();
    let mut open: Option<(String, Declared)> = None;
    for line in section.lines() {
        let code = line.trim();
        if code.starts_with("/**") || code.starts_with('*') {
            continue;
        }
        if line == "typedef struct {" {
            open = Some((String::new(), Declared::Struct(Vec::new())));
        } else if line == "typedef enum {" {
            open = Some((String::new(), Declared::Enum(Vec::new())));
        } else if let Some(name) = line.strip_prefix("enum ") {
            open = Some((name.trim().to_string(), Declared::Enum(Vec::new())));
        } else if line == "};" || line.starts_with("} ") {
            if let Some((name, members)) = open.take() {
                let typedef_name = line.trim_start_matches('}').trim().trim_end_matches(';');
                let name = if name.is_empty() {
                    typedef_name.to_string()
                } else {
                    name
                };
                items.push((name, members));
            }
        } else if let Some((_, members)) = &mut open {
            match members {
                Declared::Struct(fields) if code.ends_with(';') => {
                    let declarator = code.trim_end_matches(';').split('[').next().unwrap();
                    fields.push(declarator.rsplit([' ', '*']).next().unwrap().to_string());
                }
                Declared::Enum(constants) if code.contains(" = ") => {
                    constants.push(code.split(' ').next().unwrap().to_string());
                }
                _ => {}
            }
        }
    }
    items
}

/// The structs and enums a section declares, with the Rust module that
/// defines each and, for enums, the Rust variant names (same order as C's).
fn layout_items(ffi_dir: &Path, topic: &Topic, section: &str) -> Vec<LayoutItem> {
    declared(section)
        .into_iter()
        .map(|(name, members)| {
            let (module, source) = defining_file(ffi_dir, topic, &name);
            match members {
                Declared::Struct(fields) => LayoutItem::Struct {
                    module,
                    name,
                    fields,
                },
                Declared::Enum(constants) => {
                    let variants = rust_variants(&source, &name);
                    assert_eq!(
                        constants.len(),
                        variants.len(),
                        "{name}: C and Rust variants differ"
                    );
                    let variants = constants.into_iter().zip(variants).collect();
                    LayoutItem::Enum {
                        module,
                        name,
                        variants,
                    }
                }
            }
        })
        .collect()
}

/// The module (file stem) and source of the topic file that defines `name`.
fn defining_file(ffi_dir: &Path, topic: &Topic, name: &str) -> (String, String) {
    topic
        .files
        .iter()
        .find_map(|file| {
            let source = std::fs::read_to_string(ffi_dir.join(file)).expect("src/ffi is readable");
            let defines = source.contains(&format!("pub struct {name} "))
                || source.contains(&format!("pub enum {name} "));
            defines.then(|| (file.trim_end_matches(".rs").to_string(), source))
        })
        .unwrap_or_else(|| panic!("no file of topic {:?} defines {name}", topic.banner))
}

/// The variant names of `pub enum name` in `source`, in order.
fn rust_variants(source: &str, name: &str) -> Vec<String> {
    let start = source
        .find(&format!("pub enum {name} {{"))
        .expect("the enum is in its file");
    source[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.trim() != "}")
        .filter(|line| !line.trim_start().starts_with("//") && line.contains(" = "))
        .map(|line| line.trim().split(' ').next().unwrap().to_string())
        .collect()
}

/// Rust source of `cpp_layout_asserts()`: the C++ `static_assert`s that every
/// header struct has the size, alignment and field offsets of its Rust type,
/// and every enum constant the value of its Rust variant, with the numbers
/// taken from the Rust types themselves when that function runs.
fn layout_source(items: &[LayoutItem]) -> String {
    let mut out = String::from(
        "/// C++ `static_assert`s of the header's struct layouts and enum values,\n\
         /// with the numbers of the Rust types (generated by build_support/header.rs).\n\
         pub fn cpp_layout_asserts() -> String {\n    let mut lines: Vec<String> = Vec::new();\n",
    );
    for item in items {
        match item {
            LayoutItem::Struct {
                module,
                name,
                fields,
            } => {
                let path = format!("crate::ffi::{module}::{name}");
                writeln!(
                    out,
                    "    lines.push(format!(\"static_assert(sizeof({name}) == {{}}, \\\"{name}\\\");\", \
                     std::mem::size_of::<{path}>()));\n    \
                     lines.push(format!(\"static_assert(alignof({name}) == {{}}, \\\"{name}\\\");\", \
                     std::mem::align_of::<{path}>()));"
                )
                .unwrap();
                for field in fields {
                    writeln!(
                        out,
                        "    lines.push(format!(\"static_assert(offsetof({name}, {field}) == {{}}, \
                         \\\"{name}.{field}\\\");\", std::mem::offset_of!({path}, {field})));"
                    )
                    .unwrap();
                }
            }
            LayoutItem::Enum {
                module,
                name,
                variants,
            } => {
                for (constant, variant) in variants {
                    writeln!(
                        out,
                        "    lines.push(format!(\"static_assert({constant} == {{}}, \\\"{constant}\\\");\", \
                         crate::ffi::{module}::{name}::{variant} as i32));"
                    )
                    .unwrap();
                }
            }
        }
    }
    out.push_str("    lines.join(\"\\n\") + \"\\n\"\n}\n");
    out
}
