//! Scrapes `/metrics` over HTTP and parses the text exposition.

use std::collections::BTreeMap;

/// One scrape: each series by name and labels.
#[derive(Debug, Default)]
pub struct Scrape {
    pub series: BTreeMap<(String, BTreeMap<String, String>), f64>,
    pub text: String,
}

impl Scrape {
    /// The value of `name` with exactly `labels` (panics, showing the
    /// scrape, if there is none).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{}", self.text))
    }

    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series.get(&(name.to_owned(), labels)).copied()
    }
}

/// GET `http://{addr}/metrics`, parsed.
pub async fn scrape(addr: &str) -> Scrape {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    parse(&text)
}

/// Parses `name{k="v",…} value` lines; comments are skipped.
pub fn parse(text: &str) -> Scrape {
    let mut series = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match key.split_once('{') {
            None => (key.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let mut labels = BTreeMap::new();
                // Values here never hold `",`.
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").unwrap();
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        series.insert((name, labels), value);
    }
    Scrape {
        series,
        text: text.to_owned(),
    }
}
