//! `waxosuit new actor NAME`: a new actor project from a built-in template.
//!
//! A guided tour:
//!
//! * The templates are the repository's `templates/<lang>/` directories,
//!   embedded at build time by `build.rs` ([`TEMPLATES`]); scaffolding needs
//!   neither the source tree nor the network. `--lang` picks one (`rust` by
//!   default).
//! * [`validate_name`] admits names that are valid both as a Cargo package
//!   and as an npm package, so one rule serves every language. The project
//!   goes to `PARENT/NAME` (`--dir`, default the current directory), which
//!   must not exist or be an empty directory.
//! * [`render`] substitutes `{{name}}`, `{{name_snake}}` (dashes become
//!   underscores: the Rust crate and module name) and `{{sdk_path}}`. The
//!   Rust SDK is not on crates.io, so a template that mentions
//!   `{{sdk_path}}` depends on a Waxosuit source checkout by path:
//!   `--sdk`/`WAXOSUIT_SDK_PATH`, else the tree this binary was built from.
//! * Every file is rendered in memory, written to a hidden staging
//!   directory beside the target and renamed into place: a failure leaves
//!   nothing behind, and nobody sees a half-written project.
//! * Finally the files and the next commands (build, keys, sign, run) are
//!   printed, each ready to paste in the directory `new` ran in.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

/// One language's template: every file, as (path relative to the project
/// directory, contents with placeholders).
#[derive(Debug)]
pub(crate) struct Template {
    lang: &'static str,
    files: &'static [(&'static str, &'static str)],
}

/// The embedded templates, one per directory in `templates/`.
static TEMPLATES: &[Template] = include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The longest name accepted: well inside npm's 214 and any file system's
/// limit, and still readable in a host's logs.
const MAX_NAME_LEN: usize = 64;

/// The placeholder replaced by the SDK checkout's path.
const SDK_PLACEHOLDER: &str = "{{sdk_path}}";

/// The source tree this binary was built from: the default SDK checkout.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// What a checkout must hold to serve as the SDK.
const SDK_CRATE_MANIFEST: &str = "crates/waxosuit-actor/Cargo.toml";

#[derive(Debug, Subcommand)]
pub(crate) enum NewCommand {
    /// Create an actor project (handler, native test, README, host
    /// manifest) in PARENT/NAME.
    Actor(ActorArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ActorArgs {
    /// The actor's name: lowercase ASCII letters, digits, `-` and `_`,
    /// starting with a letter, at most 64 characters. Also the directory
    /// created and the name the actor is signed with.
    name: String,
    /// The template's language.
    #[arg(long, default_value = "rust", value_parser = lang_parser())]
    lang: String,
    /// Create the project in this directory instead of the current one.
    #[arg(long, value_name = "PARENT")]
    dir: Option<PathBuf>,
    /// A Waxosuit source checkout providing the Rust SDK
    /// (crates/waxosuit-actor), which the project depends on by path.
    /// Default: the tree this binary was built from, if it is still there.
    #[arg(long, value_name = "PATH", env = "WAXOSUIT_SDK_PATH")]
    sdk: Option<PathBuf>,
}

fn lang_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(TEMPLATES.iter().map(|t| t.lang))
}

pub(crate) fn run(cmd: NewCommand) -> Result<ExitCode> {
    match cmd {
        NewCommand::Actor(args) => new_actor(&args),
    }
}

fn new_actor(args: &ActorArgs) -> Result<ExitCode> {
    let name = args.name.as_str();
    validate_name(name)?;
    let template = TEMPLATES
        .iter()
        .find(|t| t.lang == args.lang)
        .with_context(|| {
            // Clap checks --lang against the same list; this is for callers that bypass it.
            format!(
                "there is no `{}` template; choose one of: {}",
                args.lang,
                langs()
            )
        })?;

    // Without --dir the printed paths start at the name, not at `./`.
    let (parent, project) = match &args.dir {
        Some(dir) => (dir.clone(), dir.join(name)),
        None => (PathBuf::from("."), PathBuf::from(name)),
    };
    check_parent(&parent)?;
    check_free(&project)?;

    let needs_sdk = template
        .files
        .iter()
        .any(|(_, t)| t.contains(SDK_PLACEHOLDER));
    let sdk = if needs_sdk {
        Some(toml_escape(&sdk_root(args.sdk.as_deref())?)?)
    } else {
        None
    };
    let vars = Vars {
        name,
        name_snake: &name.replace('-', "_"),
        sdk_path: sdk.as_deref(),
    };
    let mut files = Vec::with_capacity(template.files.len());
    for (path, text) in template.files {
        let relative = safe_relative(path)?;
        files.push((relative, render(text, &vars)?));
    }

    write_project(&parent, name, &project, &files)?;

    outln!(
        "Created {} from the {} template:",
        project.display(),
        template.lang
    );
    for (relative, _) in &files {
        outln!("  {}", project.join(relative).display());
    }
    let steps = next_steps(template.lang, &project, name, &own_command());
    if !steps.is_empty() {
        outln!();
        outln!("Next, from this directory:");
    }
    for (what, commands) in steps {
        outln!("  # {what}");
        for command in commands {
            outln!("  {command}");
        }
    }
    outln!("More in {}.", project.join("README.md").display());
    Ok(ExitCode::SUCCESS)
}

fn langs() -> String {
    TEMPLATES
        .iter()
        .map(|t| t.lang)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that `name` can name the project everywhere it is used: the
/// directory, the Cargo or npm package, the module file and the actor's
/// signed name.
fn validate_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "it is {} characters long, more than {MAX_NAME_LEN}",
            name.len()
        ))
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a lowercase letter (a-z)".to_string())
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        Some(format!(
            "{c:?} is not allowed: use lowercase letters (a-z), digits, `-` and `_`"
        ))
    } else if RESERVED.contains(&name.replace('-', "_").as_str()) {
        Some("it is reserved: a Rust keyword or a crate the project already depends on".to_string())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => match suggest_name(name) {
            Some(suggestion) if suggestion != name => {
                bail!("`{name}` cannot name an actor: {problem}; try `{suggestion}`")
            }
            _ => bail!(
                "`{name}` cannot name an actor: {problem}; choose a name like `my-actor` \
                 (lowercase letters, digits, `-` and `_`, starting with a letter)"
            ),
        },
    }
}

/// Names Cargo refuses for a package or its library (keywords, the
/// standard crates) and the SDK's own crates, which the project depends on.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "node_modules",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "waxosuit_actor",
    "waxosuit_codec",
    "where",
    "while",
    "yield",
];

/// A valid name close to `name`, if there is an obvious one.
fn suggest_name(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let out: String = out.chars().take(MAX_NAME_LEN).collect();
    let out = out.trim_end_matches('-');
    let valid = !out.is_empty() && !RESERVED.contains(&out.replace('-', "_").as_str());
    valid.then(|| out.to_string())
}

fn check_parent(parent: &Path) -> Result<()> {
    match fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!(
            "--dir {} is not a directory; pass the directory to create the project in",
            parent.display()
        ),
        Err(e) => bail!(
            "cannot use --dir {}: {e}; create it first (mkdir -p) or pass another directory",
            parent.display()
        ),
    }
}

/// The project directory must not exist, or be an empty directory (not a
/// link to one: whoever placed a link meant the files to land elsewhere).
fn check_free(project: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(project) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("cannot check whether {} exists: {e}", project.display()),
    };
    let empty_dir = meta.is_dir()
        && fs::read_dir(project)
            .with_context(|| format!("cannot list {}", project.display()))?
            .next()
            .is_none();
    if !empty_dir {
        bail!(
            "{} already exists and is not an empty directory; nothing was written. \
             Choose another NAME or --dir, or move it away",
            project.display()
        );
    }
    Ok(())
}

/// The SDK checkout's absolute path.
fn sdk_root(arg: Option<&Path>) -> Result<PathBuf> {
    let root = match arg {
        Some(root) => {
            if !root.join(SDK_CRATE_MANIFEST).is_file() {
                bail!(
                    "{} is not a Waxosuit source checkout: it has no {SDK_CRATE_MANIFEST}; \
                     pass --sdk (or WAXOSUIT_SDK_PATH) the root of a clone of the Waxosuit \
                     repository",
                    root.display()
                );
            }
            root.to_path_buf()
        }
        None => {
            let built_from = Path::new(BUILT_FROM);
            if !built_from.join(SDK_CRATE_MANIFEST).is_file() {
                bail!(
                    "this template depends on the Waxosuit Rust SDK, which is not on crates.io, \
                     and the source tree this binary was built from ({}) is gone; clone the \
                     Waxosuit repository and pass its path with --sdk PATH (or set \
                     WAXOSUIT_SDK_PATH)",
                    built_from.display()
                );
            }
            built_from.to_path_buf()
        }
    };
    // Absolute and without `..`: the project must build wherever it moves.
    fs::canonicalize(&root).with_context(|| format!("cannot resolve {}", root.display()))
}

/// `path` as the inside of a TOML basic string (`"…"`), where the template
/// places `{{sdk_path}}`.
fn toml_escape(path: &Path) -> Result<String> {
    let text = path.to_str().with_context(|| {
        format!(
            "the SDK path {} is not valid UTF-8, which Cargo.toml cannot hold; \
             pass --sdk a checkout at a UTF-8 path",
            path.display()
        )
    })?;
    if text.chars().any(char::is_control) {
        bail!(
            "the SDK path {text:?} contains control characters; pass --sdk a checkout at a \
             plainer path"
        );
    }
    Ok(text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Substitution values.
struct Vars<'a> {
    name: &'a str,
    name_snake: &'a str,
    /// `None` when the template does not use it.
    sdk_path: Option<&'a str>,
}

/// Replaces `{{name}}`, `{{name_snake}}` and `{{sdk_path}}` in one pass:
/// a value is never scanned again, so a path that happens to contain
/// `{{name}}` stays as it is. Any other `{{` is text (Rust format strings,
/// templating in the project's own files).
fn render(text: &str, vars: &Vars<'_>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let value = [
            ("name}}", Some(vars.name)),
            ("name_snake}}", Some(vars.name_snake)),
            ("sdk_path}}", vars.sdk_path),
        ]
        .into_iter()
        .find(|(key, _)| after.starts_with(key));
        match value {
            Some((key, Some(value))) => {
                out.push_str(value);
                rest = &after[key.len()..];
            }
            Some((key, None)) => bail!(
                "the template uses {{{{{key} but no value was given for it; this is a bug in \
                 waxosuit, please report it"
            ),
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A template path as a relative path that stays inside the project.
fn safe_relative(path: &str) -> Result<PathBuf> {
    let relative = PathBuf::from(path);
    let inside = !path.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        bail!(
            "the template file `{path}` would be written outside the project; this is a bug in waxosuit, please report it"
        );
    }
    Ok(relative)
}

/// Writes `files` into a staging directory in `parent`, then renames it to
/// `project` (which may be an empty directory: rename replaces those).
fn write_project(
    parent: &Path,
    name: &str,
    project: &Path,
    files: &[(PathBuf, String)],
) -> Result<()> {
    let staging = parent.join(format!(".{name}.waxosuit-new-{}", std::process::id()));
    fs::create_dir(&staging).with_context(|| {
        format!(
            "cannot create {} to stage the project in; check that {} is writable",
            staging.display(),
            parent.display()
        )
    })?;
    let written = files
        .iter()
        .try_for_each(|(relative, text)| {
            let path = staging.join(relative);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
        })
        .and_then(|()| {
            fs::rename(&staging, project).with_context(|| {
                format!(
                    "cannot move the new project into {} (did something else create it \
                     meanwhile?); nothing was written there",
                    project.display()
                )
            })
        });
    if written.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    written
}

/// How to call this program in the printed commands: `waxosuit` when
/// that is what `PATH` finds, else this executable's own path, so the
/// commands work as pasted either way.
fn own_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(fs::canonicalize) else {
        return "waxosuit".to_string();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| fs::canonicalize(dir.join("waxosuit")).is_ok_and(|p| p == me))
    });
    if on_path {
        "waxosuit".to_string()
    } else {
        shell_quote(&me.to_string_lossy())
    }
}

/// Quotes `word` for a POSIX shell when it needs it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The commands after scaffolding, grouped, all relative to the directory
/// `new` ran in (the project's own paths are prefixed with `project`): the
/// same steps as the template's README, which runs them inside the project.
fn next_steps(
    lang: &str,
    project: &Path,
    name: &str,
    waxosuit: &str,
) -> Vec<(&'static str, Vec<String>)> {
    let at = |relative: &str| shell_quote(&project.join(relative).to_string_lossy());
    let snake = name.replace('-', "_");
    // Only building differs between languages; keys, signing and running
    // are the same for every module.
    let (mut steps, module) = match lang {
        "rust" => (
            vec![
                (
                    "Test the handler natively",
                    vec![format!("cargo test --manifest-path {}", at("Cargo.toml"))],
                ),
                (
                    "Build the module",
                    vec![format!(
                        "cargo build --release --target wasm32-unknown-unknown --manifest-path {}",
                        at("Cargo.toml")
                    )],
                ),
            ],
            at(&format!(
                "target/wasm32-unknown-unknown/release/{snake}.wasm"
            )),
        ),
        "assemblyscript" => {
            let dir = shell_quote(&project.to_string_lossy());
            (
                vec![(
                    "Build the module (Node.js 18+, npm 9+; no install scripts needed)",
                    vec![
                        format!("npm ci --ignore-scripts --prefix {dir}"),
                        format!("npm run build --prefix {dir}"),
                    ],
                )],
                at(&format!("build/{name}.wasm")),
            )
        }
        // A template with no commands here: its README has them.
        _ => return Vec::new(),
    };
    let keys = at("keys");
    let module_key = format!("{snake}_module");
    let signed = at(&format!("build/{name}_signed.wasm"));
    steps.extend([
        (
            "Keys, once: seeds go to files in keys/ (mode 0600, git-ignored)",
            vec![
                format!("{waxosuit} keys gen account --output {keys}"),
                format!("{waxosuit} keys gen module --output {keys} --name {module_key}"),
            ],
        ),
        (
            "Sign, granting the HTTP server capability",
            vec![
                format!("mkdir -p {}", at("build")),
                format!(
                    "{waxosuit} claims sign {module} --output {signed} --name {name} \
                     --ver 0.1.0 --http-server --issuer {} --subject {}",
                    at("keys/account.nk"),
                    at(&format!("keys/{module_key}.nk")),
                ),
            ],
        ),
        (
            "Run it alone on $PORT, or from its manifest; then curl http://127.0.0.1:8080/hello",
            vec![
                format!("PORT=8080 WAXOSUIT_KEYS={keys} {waxosuit} run {signed}"),
                format!("WAXOSUIT_KEYS={keys} {waxosuit} up {}", at("waxosuit.yaml")),
            ],
        ),
    ]);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(sdk: Option<&'a str>) -> Vars<'a> {
        Vars {
            name: "my-actor",
            name_snake: "my_actor",
            sdk_path: sdk,
        }
    }

    #[test]
    fn accepts_crate_and_npm_style_names() {
        for name in ["a", "my-actor", "kv_counter2", "x-1_y", &"a".repeat(64)] {
            validate_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn refuses_names_that_cannot_be_packages_or_paths() {
        let cases = [
            ("", "it is empty"),
            ("My-Actor", "must start with a lowercase letter"),
            ("my Actor", "' ' is not allowed"),
            ("1actor", "must start with a lowercase letter"),
            ("-actor", "must start with a lowercase letter"),
            ("_actor", "must start with a lowercase letter"),
            ("../evil", "must start with a lowercase letter"),
            ("a/b", "'/' is not allowed"),
            ("a\\b", "'\\\\' is not allowed"),
            ("a.b", "'.' is not allowed"),
            ("café", "'é' is not allowed"),
            ("fn", "reserved"),
            ("waxosuit-actor", "reserved"),
            ("test", "reserved"),
        ];
        for (name, reason) in cases {
            let err = validate_name(name).unwrap_err().to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
            assert!(err.contains("cannot name an actor"), "{name:?}: {err}");
        }
        let long = "a".repeat(65);
        let err = validate_name(&long).unwrap_err().to_string();
        assert!(err.contains("65 characters long"), "{err}");
    }

    #[test]
    fn suggests_a_valid_name_when_there_is_one() {
        let err = validate_name("My Actor").unwrap_err().to_string();
        assert!(err.ends_with("try `my-actor`"), "{err}");
        assert_eq!(suggest_name("../Evil.Name"), Some("evil-name".into()));
        assert_eq!(suggest_name("123"), None);
        assert_eq!(suggest_name("Fn"), None);
        for name in ["My Actor", "../x", "9lives", "HTTP.Server!"] {
            if let Some(suggested) = suggest_name(name) {
                validate_name(&suggested).unwrap_or_else(|e| panic!("{suggested}: {e}"));
            }
        }
    }

    #[test]
    fn substitutes_placeholders_in_one_pass() {
        let text = "{{name}} {{name_snake}} path=\"{{sdk_path}}\" {{name}}";
        assert_eq!(
            render(text, &vars(Some("/src/{{name}}"))).unwrap(),
            "my-actor my_actor path=\"/src/{{name}}\" my-actor"
        );
    }

    #[test]
    fn leaves_other_braces_alone() {
        let text = "format!(\"{{}}\") {{ x }} {{nam}} {{ {{name}}}} }}{{";
        assert_eq!(
            render(text, &vars(None)).unwrap(),
            "format!(\"{{}}\") {{ x }} {{nam}} {{ my-actor}} }}{{"
        );
    }

    #[test]
    fn an_sdk_path_missing_where_the_template_needs_it_is_an_error() {
        let err = render("p = \"{{sdk_path}}\"", &vars(None)).unwrap_err();
        assert!(err.to_string().contains("{{sdk_path}}"), "{err}");
    }

    #[test]
    fn escapes_the_sdk_path_for_toml() {
        assert_eq!(
            toml_escape(Path::new(r#"/a "b"\c"#)).unwrap(),
            r#"/a \"b\"\\c"#
        );
        assert!(toml_escape(Path::new("/a\nb")).is_err());
    }

    #[test]
    fn refuses_template_paths_that_leave_the_project() {
        for path in ["../x", "/etc/passwd", "a/../../x", "", "./x"] {
            assert!(safe_relative(path).is_err(), "{path}");
        }
        assert_eq!(
            safe_relative("src/lib.rs").unwrap(),
            Path::new("src/lib.rs")
        );
    }

    #[test]
    fn the_rust_template_is_embedded_and_complete() {
        let rust = TEMPLATES.iter().find(|t| t.lang == "rust").unwrap();
        let paths: Vec<&str> = rust.files.iter().map(|(p, _)| *p).collect();
        for expected in [
            "Cargo.toml",
            "src/lib.rs",
            "README.md",
            "waxosuit.yaml",
            ".gitignore",
        ] {
            assert!(paths.contains(&expected), "{expected} missing: {paths:?}");
        }
    }

    /// A misspelt placeholder would reach the user's files unreplaced.
    #[test]
    fn every_embedded_placeholder_is_known() {
        for template in TEMPLATES {
            for (path, text) in template.files {
                safe_relative(path).unwrap();
                let rendered = render(text, &vars(Some("/sdk"))).unwrap();
                let mut rest = rendered.as_str();
                while let Some(start) = rest.find("{{") {
                    let after = &rest[start + 2..];
                    let word: String = after
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        word.is_empty() || !after[word.len()..].starts_with("}}"),
                        "{}/{path}: unknown placeholder {{{{{word}}}}}",
                        template.lang
                    );
                    rest = after;
                }
            }
        }
    }

    #[test]
    fn a_project_directory_must_be_free() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        check_free(&project).unwrap();
        fs::create_dir(&project).unwrap();
        check_free(&project).unwrap();
        fs::write(project.join("f"), "").unwrap();
        let err = check_free(&project).unwrap_err().to_string();
        assert!(err.contains("not an empty directory"), "{err}");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("link")).unwrap();
        assert!(check_free(&dir.path().join("link")).is_err());
    }

    #[test]
    fn writes_every_file_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            (PathBuf::from("a.txt"), "a".to_string()),
            (PathBuf::from("src/b.txt"), "b".to_string()),
        ];
        let project = dir.path().join("p");
        // An existing empty directory is replaced.
        fs::create_dir(&project).unwrap();
        write_project(dir.path(), "p", &project, &files).unwrap();
        assert_eq!(fs::read_to_string(project.join("src/b.txt")).unwrap(), "b");

        // The target filled up meanwhile: the rename fails, nothing is left.
        let taken = dir.path().join("q");
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("mine"), "").unwrap();
        assert!(write_project(dir.path(), "q", &taken, &files).is_err());
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["p", "q"]);
        assert_eq!(fs::read_dir(&taken).unwrap().count(), 1);
    }

    /// Every language signs with keys of the project's own and points the
    /// hosts at them, so a project never leans on the user's keystore.
    #[test]
    fn next_steps_keep_the_keys_in_the_project() {
        for lang in ["rust", "assemblyscript"] {
            let steps = next_steps(lang, Path::new("p"), "my-actor", "waxosuit");
            let commands: Vec<&String> = steps.iter().flat_map(|(_, c)| c).collect();
            let with = |needle: &str| -> Vec<&String> {
                commands
                    .iter()
                    .copied()
                    .filter(|c| c.contains(needle))
                    .collect()
            };
            assert_eq!(
                with("keys gen account --output p/keys").len(),
                1,
                "{lang}: {commands:#?}"
            );
            assert_eq!(
                with("keys gen module --output p/keys --name my_actor_module").len(),
                1,
                "{lang}: {commands:#?}"
            );
            let sign = with("claims sign");
            assert_eq!(sign.len(), 1, "{lang}: {commands:#?}");
            assert!(
                sign[0].ends_with("--issuer p/keys/account.nk --subject p/keys/my_actor_module.nk"),
                "{lang}: {}",
                sign[0]
            );
            for host in [" run ", " up "] {
                let found = with(&format!("waxosuit{host}"));
                assert_eq!(found.len(), 1, "{lang}: {commands:#?}");
                assert!(
                    found[0].contains("WAXOSUIT_KEYS=p/keys "),
                    "{lang}: {}",
                    found[0]
                );
            }
        }
        let npm = next_steps("assemblyscript", Path::new("p"), "a", "waxosuit");
        assert_eq!(npm[0].1[0], "npm ci --ignore-scripts --prefix p");
    }

    #[test]
    fn quotes_only_what_the_shell_would_split() {
        assert_eq!(shell_quote("my-actor/keys"), "my-actor/keys");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
