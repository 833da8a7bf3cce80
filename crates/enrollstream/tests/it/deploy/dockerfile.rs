//! A reader of the Dockerfile instructions this repository uses (FROM … AS, ARG, ENV k=v, RUN,
//! COPY, USER, VOLUME, EXPOSE, HEALTHCHECK, ENTRYPOINT): comments and line continuations as
//! BuildKit reads them. No crate parses Dockerfiles with their stages and exec forms for us;
//! the few rules needed here fit in this file.

use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
    pub line: usize,
}

#[derive(Debug)]
pub struct Stage {
    /// The base image with global `ARG` defaults substituted.
    pub from: String,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

pub fn parse(text: &str) -> Vec<Stage> {
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if pending.is_empty() {
            start = i + 1;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let line = std::mem::take(&mut pending);
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim().to_string();
        match (keyword.as_str(), stages.last_mut()) {
            ("FROM", _) => {
                let mut words = rest.split_whitespace().filter(|w| !w.starts_with("--"));
                let image = substitute(words.next().expect("FROM names an image"), &args);
                let name = match (words.next(), words.next()) {
                    (Some(r#as), Some(name)) if r#as.eq_ignore_ascii_case("as") => {
                        Some(name.to_string())
                    }
                    _ => None,
                };
                stages.push(Stage {
                    from: image,
                    name,
                    instructions: Vec::new(),
                });
            }
            ("ARG", None) => {
                let (k, v) = rest.split_once('=').unwrap_or((&rest, ""));
                args.insert(k.to_string(), v.to_string());
            }
            (_, None) => panic!("line {start}: {keyword} before the first FROM"),
            (_, Some(stage)) => stage.instructions.push(Instruction {
                keyword,
                args: rest,
                line: start,
            }),
        }
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a line continuation"
    );
    stages
}

fn substitute(word: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = word.to_string();
    for (k, v) in args {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

impl Stage {
    pub fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a Instruction> + 'a {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    /// `ENV a=b c=d` pairs of this stage, in order (the `ENV key value` form is refused).
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for i in self.all("ENV") {
            for pair in i.args.split_whitespace() {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {}: write ENV as key=value", i.line));
                env.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        env
    }
}

/// The JSON array of an exec-form instruction (`["a", "b"]`), after an optional prefix such as
/// `CMD` in `HEALTHCHECK --interval=10s CMD [...]`.
pub fn exec_form(args: &str, after: Option<&str>) -> Vec<String> {
    let json = match after {
        Some(word) => args
            .split_once(word)
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no {word} in {args}")),
        None => args,
    };
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("not an exec form ({e}): {json}"))
}
