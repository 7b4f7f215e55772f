//! `{{ name }}` templates. Names are the run's parameters and `run_id`,
//! `pipeline`, `run_started_at`; quality SQL adds `dataset`. An unknown
//! name is an error, found at validation time.

use std::collections::BTreeMap;

/// The names every template may use besides the parameters.
pub const BUILTINS: [&str; 3] = ["run_id", "pipeline", "run_started_at"];

/// The names used in `text`, in order.
pub fn names(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed '{{{{' in '{}'", short(text)))?;
        let name = after[..end].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad template name '{name}' in '{}'", short(text)));
        }
        out.push(name.to_string());
        rest = &after[end + 2..];
    }
    Ok(out)
}

fn short(t: &str) -> String {
    let t = t.trim();
    if t.chars().count() > 60 {
        format!("{}…", t.chars().take(60).collect::<String>())
    } else {
        t.to_string()
    }
}

/// Replace every `{{ name }}` with its value.
pub fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed '{{{{' in '{}'", short(text)))?;
        let name = after[..end].trim();
        let v = vars
            .get(name)
            .ok_or_else(|| format!("unknown template name '{name}'"))?;
        out.push_str(v);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_refuses_unknown_names() {
        let vars = BTreeMap::from([("date".to_string(), "2026-11-20".to_string())]);
        assert_eq!(
            render("raw/{{ date }}/x-{{date}}.csv", &vars).unwrap(),
            "raw/2026-11-20/x-2026-11-20.csv"
        );
        assert!(render("{{ nope }}", &vars).unwrap_err().contains("nope"));
        assert!(names("{{ a }} {{ b }").is_err());
        assert_eq!(names("{{ a }} and {{ b_2 }}").unwrap(), vec!["a", "b_2"]);
    }
}
