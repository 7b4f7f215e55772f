//! PII classification of a column from its name and sampled values.
//!
//! Invariants:
//! - Values decide when they can: a kind with a distinctive format (e-mail,
//!   IP address, Luhn-valid card number, international phone number) is
//!   found from values alone; kinds whose values are ambiguous (names,
//!   street addresses, birth dates) also need a hint in the column name.
//! - When samples exist, a name hint alone never classifies: a column
//!   `phone_model` holding `iPhone 15` is not a phone number.
//! - Every classification carries a confidence in [0, 1] and its tags.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Kinds of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A person's name (first, last or full).
    PersonName,
    /// A street address.
    StreetAddress,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A payment card number.
    CardNumber,
    /// A date of birth.
    DateOfBirth,
}

impl PiiKind {
    /// Every kind.
    pub const ALL: [PiiKind; 7] = [
        Self::Email,
        Self::Phone,
        Self::PersonName,
        Self::StreetAddress,
        Self::IpAddress,
        Self::CardNumber,
        Self::DateOfBirth,
    ];

    /// The tag name, e.g. `email`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::PersonName => "person_name",
            Self::StreetAddress => "street_address",
            Self::IpAddress => "ip_address",
            Self::CardNumber => "card_number",
            Self::DateOfBirth => "date_of_birth",
        }
    }

    /// Tags for catalogs: `pii`, `pii.<kind>`, `gdpr`, `ccpa`, and `pci`
    /// for card numbers.
    pub fn tags(self) -> Vec<String> {
        let mut t = vec![
            "pii".to_string(),
            format!("pii.{}", self.as_str()),
            "gdpr".into(),
            "ccpa".into(),
        ];
        if self == Self::CardNumber {
            t.push("pci".into());
        }
        t
    }
}

/// A column found to hold personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// The kind.
    pub kind: PiiKind,
    /// How sure, from 0 to 1.
    pub confidence: f64,
    /// Tags to attach.
    pub tags: Vec<String>,
    /// Why, for people reviewing it.
    pub reason: String,
}

/// Classifications below this confidence are not reported.
pub const THRESHOLD: f64 = 0.7;

fn tokens(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if (!ch.is_alphanumeric() || (ch.is_uppercase() && prev_lower)) && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if ch.is_alphanumeric() {
            cur.extend(ch.to_lowercase());
        }
        prev_lower = ch.is_lowercase();
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn hint(kind: PiiKind, t: &[String]) -> bool {
    // `address1`, `addr2`, `name_1`: trailing digits do not change meaning.
    let t: Vec<&str> = t
        .iter()
        .map(|x| x.trim_end_matches(|c: char| c.is_ascii_digit()))
        .collect();
    let has = |w: &str| t.contains(&w);
    let any = |ws: &[&str]| ws.iter().any(|w| has(w));
    match kind {
        PiiKind::Email => any(&["email", "mail", "emailaddress"]),
        PiiKind::Phone => {
            any(&[
                "phone",
                "tel",
                "telephone",
                "mobile",
                "cell",
                "fax",
                "msisdn",
            ]) || (has("contact") && any(&["no", "number", "num"]))
        }
        PiiKind::PersonName => {
            // `name`/`nm` names a person unless it names a thing; the values
            // must look like names too.
            if any(&[
                "product",
                "brand",
                "company",
                "file",
                "user",
                "host",
                "table",
                "column",
                "account",
                "business",
                "org",
                "organization",
                "app",
                "device",
                "model",
                "street",
                "city",
                "country",
                "category",
                "domain",
                "department",
                "dept",
                "job",
                "title",
                "event",
                "page",
                "field",
                "display",
                "screen",
                "team",
                "store",
                "shop",
                "item",
                "plan",
                "bank",
            ]) {
                return false;
            }
            // A bare `name` is too often a thing's name (products, stores):
            // it needs a qualifier, as in `customer_name` or `cust_nm`.
            any(&[
                "surname",
                "firstname",
                "lastname",
                "fullname",
                "forename",
                "nom",
                "prenom",
                "vorname",
                "nachname",
                "nombre",
                "apellido",
            ]) || ((has("name") || has("nm")) && t.len() >= 2)
                || (has("contact") && has("person"))
        }
        PiiKind::StreetAddress => {
            any(&["street", "address", "addr", "line1", "line2"]) && !any(&["ip", "email", "mac"])
        }
        PiiKind::IpAddress => {
            any(&["ip", "ipv4", "ipv6", "forwarded"]) || (has("remote") && has("addr"))
        }
        PiiKind::CardNumber => any(&["card", "pan", "cc", "creditcard"]),
        PiiKind::DateOfBirth => any(&[
            "birth",
            "dob",
            "born",
            "birthday",
            "birthdate",
            "naissance",
            "geburtsdatum",
            "nacimiento",
            "nascita",
        ]),
    }
}

fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.contains(['@', ' '])
        && domain
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

fn phone_digits(v: &str) -> Option<usize> {
    if !v
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return None;
    }
    let digits = v.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&digits).then_some(digits)
}

fn is_phone(v: &str) -> bool {
    phone_digits(v).is_some() && (v.starts_with('+') || v.starts_with('0') || v.starts_with('('))
}

fn is_international_phone(v: &str) -> bool {
    v.starts_with('+') && phone_digits(v).is_some_and(|d| d >= 8)
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn is_card(v: &str) -> bool {
    if !v
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return false;
    }
    let digits: Vec<u32> = v.chars().filter_map(|c| c.to_digit(10)).collect();
    (13..=19).contains(&digits.len()) && luhn(&digits)
}

fn is_ip(v: &str) -> bool {
    // One address, or a list as in X-Forwarded-For.
    v.split(',').all(|p| p.trim().parse::<IpAddr>().is_ok())
}

fn is_date(v: &str) -> bool {
    [
        "%Y-%m-%d",
        "%d/%m/%Y",
        "%m/%d/%Y",
        "%d.%m.%Y",
        "%Y%m%d",
        "%Y/%m/%d",
        "%d-%b-%Y",
        "%d-%b-%y",
        "%d %B %Y",
        "%B %d, %Y",
    ]
    .iter()
    .any(|f| chrono::NaiveDate::parse_from_str(v.trim(), f).is_ok())
}

fn is_person_name(v: &str) -> bool {
    // `Ana Silva`, `SMITH, JOHN`, `JOHN A DOE`: 1 to 5 capitalised words.
    let words: Vec<&str> = v
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    (1..=5).contains(&words.len())
        && words.iter().all(|w| {
            w.chars().next().is_some_and(char::is_uppercase)
                && w.chars().all(|c| c.is_alphabetic() || "'-.".contains(c))
        })
}

fn is_street(v: &str) -> bool {
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let has_word = v
        .split(|c: char| !c.is_alphabetic())
        .any(|w| w.chars().count() >= 3);
    has_digit && has_word && v.len() <= 120
}

/// Classify a column from its name and a sample of its values.
pub fn classify(column: &str, samples: &[&str]) -> Option<Classification> {
    let t = tokens(column);
    let values: Vec<&str> = samples
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    let share = |f: &dyn Fn(&str) -> bool| {
        if values.is_empty() {
            0.0
        } else {
            values.iter().filter(|v| f(v)).count() as f64 / values.len() as f64
        }
    };
    // (kind, value test, values alone suffice)
    type Test<'a> = (
        PiiKind,
        &'a dyn Fn(&str) -> bool,
        Option<&'a dyn Fn(&str) -> bool>,
    );
    let tests: [Test<'_>; 7] = [
        (PiiKind::CardNumber, &is_card, Some(&is_card)),
        (PiiKind::Email, &is_email, Some(&is_email)),
        (PiiKind::IpAddress, &is_ip, Some(&is_ip)),
        (PiiKind::Phone, &is_phone, Some(&is_international_phone)),
        (PiiKind::DateOfBirth, &is_date, None),
        (PiiKind::PersonName, &is_person_name, None),
        (PiiKind::StreetAddress, &is_street, None),
    ];
    let version_like = t.iter().any(|x| x == "version" || x == "ver");
    let mut best: Option<Classification> = None;
    for (kind, test, alone) in tests {
        let named = hint(kind, &t);
        let (confidence, reason) = if values.is_empty() {
            if named {
                (
                    0.7,
                    format!("column name '{column}' suggests {}", kind.as_str()),
                )
            } else {
                continue;
            }
        } else {
            let s = share(test);
            if named && s >= 0.6 {
                (
                    0.8 + 0.2 * s,
                    format!(
                        "name '{column}' and {:.0}% of sampled values look like {}",
                        s * 100.0,
                        kind.as_str()
                    ),
                )
            } else if let Some(strict) = alone {
                let s = share(strict);
                if s >= 0.8 && !version_like {
                    (
                        0.6 + 0.3 * s,
                        format!("{:.0}% of sampled values are {}", s * 100.0, kind.as_str()),
                    )
                } else {
                    continue;
                }
            } else {
                continue;
            }
        };
        if confidence >= THRESHOLD && best.as_ref().is_none_or(|b| confidence > b.confidence) {
            best = Some(Classification {
                kind,
                confidence: (confidence * 100.0).round() / 100.0,
                tags: kind.tags(),
                reason,
            });
        }
    }
    best
}

/// A labelled column of the evaluation fixture.
#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    /// Column name.
    pub name: String,
    /// Sample values.
    pub samples: Vec<String>,
    /// The expected kind; `None` when not PII.
    pub label: Option<PiiKind>,
}

/// Precision and recall over a labelled fixture.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Correct classifications / all classifications.
    pub precision: f64,
    /// Correct classifications / all PII columns.
    pub recall: f64,
    /// Columns classified wrongly or missed: (name, expected, got).
    pub mistakes: Vec<(String, Option<PiiKind>, Option<PiiKind>)>,
}

/// Evaluate [`classify`] on labelled columns.
pub fn evaluate(columns: &[Labelled]) -> Evaluation {
    let (mut predicted, mut correct, mut positives) = (0usize, 0usize, 0usize);
    let mut mistakes = Vec::new();
    for c in columns {
        let samples: Vec<&str> = c.samples.iter().map(String::as_str).collect();
        let got = classify(&c.name, &samples).map(|x| x.kind);
        if c.label.is_some() {
            positives += 1;
        }
        if got.is_some() {
            predicted += 1;
        }
        if got.is_some() && got == c.label {
            correct += 1;
        } else if got != c.label {
            mistakes.push((c.name.clone(), c.label, got));
        }
    }
    Evaluation {
        precision: if predicted == 0 {
            1.0
        } else {
            correct as f64 / predicted as f64
        },
        recall: if positives == 0 {
            1.0
        } else {
            correct as f64 / positives as f64
        },
        mistakes,
    }
}

/// Classify every column of sampled rows: the string form of up to 200
/// non-null values per column is looked at.
pub fn classify_batches(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> Vec<(String, Option<Classification>)> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    let Some(first) = batches.first() else {
        return vec![];
    };
    let schema = first.schema();
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut values: Vec<String> = Vec::new();
            for b in batches {
                if values.len() >= 200 {
                    break;
                }
                let Ok(col) = cast(b.column(i), &DataType::Utf8) else {
                    continue;
                };
                let col = col.as_string::<i32>();
                for r in 0..col.len() {
                    if values.len() >= 200 {
                        break;
                    }
                    if col.is_valid(r) {
                        values.push(col.value(r).to_string());
                    }
                }
            }
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            (f.name().clone(), classify(f.name(), &refs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_alone_do_not_override_values() {
        assert!(classify("phone_model", &["iPhone 15", "Pixel 8"]).is_none());
        assert_eq!(
            classify("mobile", &[]).map(|c| c.kind),
            Some(PiiKind::Phone)
        );
        let c = classify("c7", &["a@b.com", "x.y@z.org"]).unwrap();
        assert_eq!(c.kind, PiiKind::Email);
        assert!(c.tags.contains(&"pii.email".to_string()));
        assert!(classify("app_version", &["1.2.3.4", "2.0.0.1"]).is_none());
        assert!(classify("name", &["Wireless Headphones", "Usb Charger"]).is_none());
        assert!(is_card("4111 1111 1111 1111") && !is_card("4111 1111 1111 1112"));
        assert_eq!(tokens("customerFirstName2"), ["customer", "first", "name2"]);
    }

    #[test]
    fn precision_and_recall_on_the_labelled_fixture() {
        #[derive(Deserialize)]
        struct Fixture {
            columns: Vec<Labelled>,
        }
        for set in ["fixture", "holdout"] {
            // The checkout being tested, not the one the binary was built in.
            let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
            let path = format!("{dir}/../../bench/pii/{set}.json");
            let f: Fixture =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let e = evaluate(&f.columns);
            assert!(
                e.precision >= 0.95 && e.recall >= 0.95,
                "{set}: precision {:.3}, recall {:.3}, mistakes {:?}",
                e.precision,
                e.recall,
                e.mistakes
            );
        }
    }
}
