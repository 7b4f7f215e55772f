//! The e-commerce sample data set: customers, products, orders with line
//! items, payment and shipping, and clickstream events, written to
//! `raw/ecommerce/<entity>/YYYY-MM-DD/` as CSV, JSON lines or Parquet.
//!
//! Invariants:
//! - Output is a pure function of [`Spec`]: the same spec gives the same
//!   bytes. Every (entity, day) has its own seeded generator.
//! - Memory is bounded: rows stream to a local temporary file (Parquet in
//!   row groups of [`BATCH_ROWS`]) which is then uploaded in parts.
//! - Every injected defect is counted in the [`Report`], per file and kind.

mod sink;

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use gridata_core::Zone;
use gridata_storage::Storage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use sink::FileSink;
pub use sink::{Cell, ColType, Format};

/// Rows per Parquet row group and per progress report.
pub const BATCH_ROWS: usize = 65_536;

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local temporary file failed.
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Encoding Parquet failed.
    #[error("writing {path}: {reason}")]
    Encode { path: String, reason: String },
    /// Uploading to the raw zone failed.
    #[error(transparent)]
    Storage(#[from] gridata_storage::Error),
    /// The spec is out of range.
    #[error("invalid spec: {0}")]
    Spec(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Orders in total, spread evenly over the days.
    pub orders: u64,
    /// The first day.
    pub start: NaiveDate,
    /// Number of days.
    pub days: u32,
    /// File format of every entity.
    pub format: Format,
    /// Seed of every generator.
    pub seed: u64,
    /// Share of rows (0 to 1) that carry a defect.
    pub defect_rate: f64,
    /// Also write clickstream events (about 1.5 KB per order in CSV).
    pub clickstream: bool,
}

impl Spec {
    /// Customers in the population: one per eight orders, at least 50.
    pub fn customers(&self) -> u64 {
        (self.orders / 8).max(50)
    }

    /// Products in the catalogue: one per hundred orders, 20 to 5,000.
    pub fn products(&self) -> u64 {
        (self.orders / 100).clamp(20, 5_000)
    }

    /// Customers that exist (signed up) by the end of day `d`: 80% on the
    /// first day, the rest spread over the days.
    pub fn customers_by_day(&self, d: u32) -> u64 {
        let base = self.customers() * 4 / 5;
        let rest = self.customers() - base;
        base + rest * u64::from(d + 1) / u64::from(self.days)
    }

    fn orders_on_day(&self, d: u32) -> (u64, u64) {
        let per = self.orders / u64::from(self.days);
        let extra = self.orders % u64::from(self.days);
        let first = per * u64::from(d) + extra.min(u64::from(d));
        let n = per + u64::from(u64::from(d) < extra);
        (first, n)
    }

    fn check(&self) -> Result<()> {
        if self.days == 0 {
            return Err(Error::Spec("days must be at least 1".into()));
        }
        if self.orders == 0 {
            return Err(Error::Spec("orders must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.defect_rate) {
            return Err(Error::Spec(format!(
                "defect rate {} is not between 0 and 1",
                self.defect_rate
            )));
        }
        Ok(())
    }
}

/// One file written.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// Its URI.
    pub uri: String,
    /// Data rows (lines after the header), malformed ones included.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// Defects by kind.
    pub defects: BTreeMap<&'static str, u64>,
}

/// Everything written.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Files in the order they were written.
    pub files: Vec<FileReport>,
}

const CUSTOMERS: &[(&str, ColType)] = &[
    ("customer_id", ColType::Str),
    ("first_name", ColType::Str),
    ("last_name", ColType::Str),
    ("email", ColType::Str),
    ("phone", ColType::Str),
    ("birth_date", ColType::Str),
    ("street", ColType::Str),
    ("city", ColType::Str),
    ("postcode", ColType::Str),
    ("country", ColType::Str),
    ("signup_ts", ColType::Str),
    ("marketing_opt_in", ColType::Bool),
];

const PRODUCTS: &[(&str, ColType)] = &[
    ("product_id", ColType::Str),
    ("name", ColType::Str),
    ("category", ColType::Str),
    ("brand", ColType::Str),
    ("unit_price", ColType::Money),
    ("unit_cost", ColType::Money),
    ("weight_kg", ColType::Money),
    ("active", ColType::Bool),
];

const ORDERS: &[(&str, ColType)] = &[
    ("order_id", ColType::Str),
    ("customer_id", ColType::Str),
    ("order_ts", ColType::Str),
    ("status", ColType::Str),
    ("currency", ColType::Str),
    ("payment_method", ColType::Str),
    ("payment_status", ColType::Str),
    ("coupon_code", ColType::Str),
    ("order_discount", ColType::Money),
    ("tax_rate", ColType::Money),
    ("shipping_method", ColType::Str),
    ("shipping_cost", ColType::Money),
    ("ship_street", ColType::Str),
    ("ship_city", ColType::Str),
    ("ship_postcode", ColType::Str),
    ("ship_country", ColType::Str),
    ("ip_address", ColType::Str),
];

const ORDER_ITEMS: &[(&str, ColType)] = &[
    ("order_id", ColType::Str),
    ("line_number", ColType::Int),
    ("product_id", ColType::Str),
    ("quantity", ColType::Int),
    ("unit_price", ColType::Money),
    ("line_discount", ColType::Money),
];

const EVENTS: &[(&str, ColType)] = &[
    ("event_id", ColType::Str),
    ("session_id", ColType::Str),
    ("customer_id", ColType::Str),
    ("event_ts", ColType::Str),
    ("event_type", ColType::Str),
    ("page_url", ColType::Str),
    ("product_id", ColType::Str),
    ("device", ColType::Str),
    ("referrer", ColType::Str),
];

const FIRST: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Mia", "Lucas",
    "Ava", "Mateo", "Isla", "Hugo", "Lea", "Jonas", "Chiara", "Luca", "Sofia", "Arjun", "Yuki",
    "Wei", "Fatima", "Omar", "Ingrid", "Lars", "Zoe", "Max", "Nora", "Ethan",
];
const LAST: &[&str] = &[
    "Smith",
    "Garcia",
    "Müller",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Nguyen",
    "Patel",
    "Kim",
    "Johansson",
    "O'Brien",
    "Silva",
    "Novak",
    "Jensen",
    "Schmidt",
    "Martin",
    "Tanaka",
    "Cohen",
    "Fischer",
    "Brown",
    "Lopez",
    "Wilson",
    "Moreau",
    "Bianchi",
    "Andersen",
];
const PLACES: &[(&str, &str, &str)] = &[
    ("Berlin", "10115", "DE"),
    ("Munich", "80331", "DE"),
    ("Paris", "75001", "FR"),
    ("Lyon", "69001", "FR"),
    ("Madrid", "28001", "ES"),
    ("Milan", "20121", "IT"),
    ("Amsterdam", "1012", "NL"),
    ("London", "SW1A 1AA", "GB"),
    ("New York", "10001", "US"),
    ("Austin", "73301", "US"),
    ("Toronto", "M5H 2N2", "CA"),
    ("Stockholm", "111 20", "SE"),
];
const STREETS: &[&str] = &[
    "Main Street",
    "High Street",
    "Station Road",
    "Park Avenue",
    "Church Lane",
    "Market Square",
    "Mill Road",
    "Oak Drive",
];
const CATEGORIES: &[(&str, &[&str], (i64, i64))] = &[
    (
        "Electronics",
        &["Headphones", "Charger", "Speaker", "Keyboard", "Monitor"],
        (1_500, 60_000),
    ),
    (
        "Home",
        &["Lamp", "Mug", "Cushion", "Vase", "Blanket"],
        (500, 12_000),
    ),
    (
        "Fashion",
        &["T-Shirt", "Sneakers", "Jacket", "Scarf", "Backpack"],
        (900, 25_000),
    ),
    (
        "Books",
        &["Novel", "Cookbook", "Atlas", "Guide", "Biography"],
        (600, 4_500),
    ),
    (
        "Sports",
        &["Yoga Mat", "Dumbbell", "Bottle", "Tent", "Helmet"],
        (700, 30_000),
    ),
    (
        "Beauty",
        &["Serum", "Shampoo", "Perfume", "Lipstick", "Cream"],
        (400, 9_000),
    ),
];
const BRANDS: &[&str] = &[
    "Acme", "Nordic", "Vela", "Orbit", "Kumo", "Atlas", "Pine", "Lumen",
];
const STATUSES: &[(&str, u32)] = &[
    ("delivered", 60),
    ("shipped", 15),
    ("paid", 10),
    ("placed", 5),
    ("cancelled", 6),
    ("returned", 4),
];
const PAYMENTS: &[(&str, u32)] = &[
    ("card", 55),
    ("paypal", 20),
    ("apple_pay", 12),
    ("bank_transfer", 8),
    ("gift_card", 5),
];
const SHIPPING: &[(&str, i64, u32)] = &[
    ("standard", 499, 60),
    ("express", 999, 25),
    ("next_day", 1_499, 10),
    ("pickup", 0, 5),
];
const DEVICES: &[(&str, u32)] = &[("mobile", 55), ("desktop", 35), ("tablet", 10)];
const REFERRERS: &[&str] = &["direct", "google", "newsletter", "instagram", "affiliate"];

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn weighted<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T], w: impl Fn(&T) -> u32) -> &'a T {
    let total: u32 = items.iter().map(&w).sum();
    let mut x = rng.random_range(0..total);
    for it in items {
        let wi = w(it);
        if x < wi {
            return it;
        }
        x -= wi;
    }
    &items[items.len() - 1]
}

fn s(v: impl Into<String>) -> Cell {
    Cell::S(v.into())
}

fn ts(day: NaiveDate, secs: u32) -> String {
    let t = day.and_hms_opt(0, 0, 0).expect("midnight") + Duration::seconds(i64::from(secs));
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An id with a fixed-width number: `C00000042`.
fn id(prefix: char, n: u64, width: usize) -> String {
    format!("{prefix}{n:0width$}")
}

struct Gen<'a> {
    spec: &'a Spec,
    storage: &'a Storage,
    report: Report,
}

/// Generate the data set. `progress` is called with the orders written so
/// far.
pub async fn generate(
    storage: &Storage,
    spec: &Spec,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Report> {
    spec.check()?;
    let mut g = Gen {
        spec,
        storage,
        report: Report::default(),
    };
    let mut done = 0u64;
    for d in 0..spec.days {
        let day = spec.start + Duration::days(i64::from(d));
        g.customers(d, day).await?;
        if d == 0 {
            g.products(day).await?;
        }
        let n = g.orders(d, day, &mut |k| progress(done + k)).await?;
        done += n;
        progress(done);
        if spec.clickstream {
            g.clickstream(d, day).await?;
        }
    }
    Ok(g.report)
}

impl Gen<'_> {
    fn rng(&self, entity: u64, d: u32) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(
            self.spec.seed ^ entity.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(d) << 40,
        )
    }

    fn sink(&self, columns: &'static [(&'static str, ColType)]) -> Result<FileSink> {
        FileSink::new(self.spec.format, columns)
    }

    async fn finish(
        &mut self,
        sink: FileSink,
        entity: &str,
        file: &str,
        day: NaiveDate,
        checksum: bool,
    ) -> Result<()> {
        let rel = format!(
            "ecommerce/{entity}/{}/{file}.{}",
            day.format("%Y-%m-%d"),
            self.spec.format.ext()
        );
        let uri = self.storage.uri(Zone::Raw, &rel);
        let done = sink.finish()?;
        let bytes = self.storage.upload_file(&uri, done.path()).await?;
        if checksum {
            let line = format!("{}  {file}.{}\n", done.sha256, self.spec.format.ext());
            self.storage
                .write(&format!("{uri}.sha256"), line.into_bytes().into())
                .await?;
        }
        self.report.files.push(FileReport {
            uri,
            rows: done.rows,
            bytes,
            defects: done.defects,
        });
        Ok(())
    }

    fn defect(&self, rng: &mut ChaCha8Rng) -> bool {
        self.spec.defect_rate > 0.0 && rng.random_bool(self.spec.defect_rate)
    }

    async fn customers(&mut self, d: u32, day: NaiveDate) -> Result<()> {
        let mut rng = self.rng(1, d);
        let from = if d == 0 {
            0
        } else {
            self.spec.customers_by_day(d - 1)
        };
        let to = self.spec.customers_by_day(d);
        let mut sink = self.sink(CUSTOMERS)?;
        for n in from..to {
            let first = *pick(&mut rng, FIRST);
            let last = *pick(&mut rng, LAST);
            let (city, postcode, country) = *pick(&mut rng, PLACES);
            let signup = if d == 0 {
                let back = rng.random_range(1..1_500);
                ts(day - Duration::days(back), rng.random_range(0..86_400))
            } else {
                ts(day, rng.random_range(0..86_400))
            };
            let birth = NaiveDate::from_ymd_opt(rng.random_range(1950..2006), 1, 1)
                .expect("valid date")
                + Duration::days(rng.random_range(0..365));
            let mail_user = format!(
                "{}.{}{}",
                first.to_lowercase(),
                last.to_lowercase().replace(['\'', 'ü'], ""),
                n % 1000
            );
            let mut row = vec![
                s(id('C', n + 1, 8)),
                s(first),
                s(last),
                s(format!("{mail_user}@example.com")),
                s(format!(
                    "+{} {:03} {:07}",
                    rng.random_range(1..50),
                    rng.random_range(100..999),
                    rng.random_range(0..9_999_999)
                )),
                s(birth.format("%Y-%m-%d").to_string()),
                s(format!(
                    "{} {}",
                    rng.random_range(1..200),
                    pick(&mut rng, STREETS)
                )),
                s(city),
                s(postcode),
                s(country),
                s(signup),
                Cell::B(rng.random_bool(0.4)),
            ];
            if self.defect(&mut rng) {
                row[3] = Cell::Null;
                sink.defect("null_required");
            }
            sink.row(&row)?;
        }
        self.finish(sink, "customers", "customers", day, false)
            .await
    }

    async fn products(&mut self, day: NaiveDate) -> Result<()> {
        let mut rng = self.rng(2, 0);
        let mut sink = self.sink(PRODUCTS)?;
        for n in 0..self.spec.products() {
            let (category, kinds, (lo, hi)) = *pick(&mut rng, CATEGORIES);
            let price = rng.random_range(lo..hi) / 10 * 10 + 9;
            let cost = price * rng.random_range(35..75) / 100;
            let brand = *pick(&mut rng, BRANDS);
            sink.row(&[
                s(id('P', n + 1, 6)),
                s(format!("{brand} {}", pick(&mut rng, kinds))),
                s(category),
                s(brand),
                Cell::M(price),
                Cell::M(cost),
                Cell::M(rng.random_range(5..2_500)),
                Cell::B(rng.random_bool(0.95)),
            ])?;
        }
        self.finish(sink, "products", "products", day, false).await
    }

    /// Each product's price in cents, replaying the catalogue's draws.
    fn catalogue_prices(&self) -> Vec<i64> {
        let mut rng = self.rng(2, 0);
        (0..self.spec.products())
            .map(|_| {
                let (_, kinds, (lo, hi)) = *pick(&mut rng, CATEGORIES);
                let price = rng.random_range(lo..hi) / 10 * 10 + 9;
                let _ = rng.random_range(35..75);
                let _ = pick(&mut rng, BRANDS);
                let _ = pick(&mut rng, kinds);
                let _ = rng.random_range(5..2_500);
                let _ = rng.random_bool(0.95);
                price
            })
            .collect()
    }

    async fn orders(
        &mut self,
        d: u32,
        day: NaiveDate,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let mut rng = self.rng(3, d);
        let (first, n) = self.spec.orders_on_day(d);
        let customers = self.spec.customers_by_day(d);
        let prices = self.catalogue_prices();
        let mut orders = self.sink(ORDERS)?;
        let mut items = self.sink(ORDER_ITEMS)?;
        let malformed_ok = self.spec.format != Format::Parquet;
        let mut previous: Option<Vec<Cell>> = None;
        for k in 0..n {
            let order_no = first + k + 1;
            let order_id = id('O', order_no, 10);
            // Skewed towards low ids: some customers buy far more often.
            let u: f64 = rng.random();
            let cust = ((u * u) * customers as f64) as u64 + 1;
            let secs = rng.random_range(0..86_400);
            let status = weighted(&mut rng, STATUSES, |s| s.1).0;
            let payment = weighted(&mut rng, PAYMENTS, |p| p.1).0;
            let payment_status = match status {
                "placed" => "authorized",
                "cancelled" => *pick(&mut rng, &["failed", "refunded"]),
                "returned" => "refunded",
                _ => "captured",
            };
            let (ship, ship_cost, _) = *weighted(&mut rng, SHIPPING, |s| s.2);
            let (city, postcode, country) = *pick(&mut rng, PLACES);
            let coupon = rng.random_bool(0.15);
            let tax = match country {
                "DE" => 1_900,
                "FR" | "GB" => 2_000,
                "ES" | "NL" => 2_100,
                "IT" => 2_200,
                "SE" => 2_500,
                "CA" => 1_300,
                _ => 800,
            };
            let mut row = vec![
                s(order_id.clone()),
                s(id('C', cust, 8)),
                s(ts(day, secs)),
                s(status),
                s("EUR"),
                s(payment),
                s(payment_status),
                if coupon {
                    s(*pick(&mut rng, &["WELCOME10", "SPRING5", "VIP20"]))
                } else {
                    Cell::Null
                },
                Cell::M(if coupon {
                    rng.random_range(1..20) * 100
                } else {
                    0
                }),
                // The tax rate as a fraction: 19% is 0.19.
                Cell::M(tax / 100),
                s(ship),
                Cell::M(ship_cost),
                s(format!(
                    "{} {}",
                    rng.random_range(1..200),
                    pick(&mut rng, STREETS)
                )),
                s(city),
                s(postcode),
                s(country),
                s(format!(
                    "{}.{}.{}.{}",
                    rng.random_range(1..224),
                    rng.random_range(0..256),
                    rng.random_range(0..256),
                    rng.random_range(1..255)
                )),
            ];
            if self.defect(&mut rng) {
                let kinds: &[&str] = if malformed_ok {
                    &[
                        "null_required",
                        "unparseable_timestamp",
                        "duplicate_id",
                        "unknown_customer",
                        "malformed_line",
                    ]
                } else {
                    &[
                        "null_required",
                        "unparseable_timestamp",
                        "duplicate_id",
                        "unknown_customer",
                    ]
                };
                let kind = *pick(&mut rng, kinds);
                match kind {
                    "null_required" => row[1] = Cell::Null,
                    "unparseable_timestamp" => {
                        row[2] = s(format!(
                            "{}/{}/{} 25:{:02}",
                            rng.random_range(13..40),
                            rng.random_range(1..13),
                            day.format("%Y"),
                            rng.random_range(0..60)
                        ))
                    }
                    "duplicate_id" => {
                        if let Some(prev) = &previous {
                            row[0] = prev[0].clone();
                        }
                    }
                    "unknown_customer" => row[1] = s(id('X', rng.random_range(1..99_999), 8)),
                    _ => {}
                }
                if kind == "malformed_line" {
                    orders.malformed(&format!(
                        "{order_id},{},{}",
                        id('C', cust, 8),
                        ts(day, secs)
                    ))?;
                } else {
                    orders.row(&row)?;
                }
                orders.defect(kind);
                if kind == "duplicate_id" && previous.is_some() {
                    // The duplicate carries no line items of its own.
                    previous = Some(row);
                    continue;
                }
            } else {
                orders.row(&row)?;
            }
            let lines = *weighted(
                &mut rng,
                &[(1u32, 45u32), (2, 25), (3, 15), (4, 10), (5, 5)],
                |l| l.1,
            );
            for line in 1..=lines.0 {
                let product = rng.random_range(0..self.spec.products());
                let qty = *weighted(&mut rng, &[(1i64, 70u32), (2, 20), (3, 7), (5, 3)], |q| q.1);
                let price = prices[product as usize];
                let disc = if rng.random_bool(0.1) {
                    price * qty.0 / 10
                } else {
                    0
                };
                let mut item = vec![
                    s(order_id.clone()),
                    Cell::I(i64::from(line)),
                    s(id('P', product + 1, 6)),
                    Cell::I(qty.0),
                    Cell::M(price),
                    Cell::M(disc),
                ];
                if self.defect(&mut rng) {
                    if rng.random_bool(0.7) {
                        item[3] = Cell::I(-qty.0);
                        items.defect("negative_quantity");
                    } else {
                        item[2] = Cell::Null;
                        items.defect("null_required");
                    }
                }
                items.row(&item)?;
            }
            previous = Some(row);
            if k % BATCH_ROWS as u64 == 0 {
                progress(k);
            }
        }
        self.finish(orders, "orders", "orders", day, true).await?;
        self.finish(items, "orders", "order_items", day, true)
            .await?;
        Ok(n)
    }

    async fn clickstream(&mut self, d: u32, day: NaiveDate) -> Result<()> {
        let mut rng = self.rng(4, d);
        let (_, orders) = self.spec.orders_on_day(d);
        let customers = self.spec.customers_by_day(d);
        let sessions = orders * 3;
        let malformed_ok = self.spec.format != Format::Parquet;
        let mut sink = self.sink(EVENTS)?;
        let mut event = 0u64;
        for sn in 0..sessions {
            let session = format!("S{}-{:08}", day.format("%Y%m%d"), sn + 1);
            let u: f64 = rng.random();
            let cust = if rng.random_bool(0.2) {
                Cell::Null
            } else {
                s(id('C', ((u * u) * customers as f64) as u64 + 1, 8))
            };
            let device = weighted(&mut rng, DEVICES, |x| x.1).0;
            let referrer = *pick(&mut rng, REFERRERS);
            let mut secs = rng.random_range(0..80_000u32);
            let views = rng.random_range(1..9);
            for v in 0..views {
                let product = rng.random_range(0..self.spec.products());
                let kind = if v == 0 {
                    "page_view"
                } else if rng.random_bool(0.12) {
                    "add_to_cart"
                } else {
                    *pick(&mut rng, &["page_view", "product_view"])
                };
                event += 1;
                let mut row = vec![
                    s(format!("E{}-{:09}", day.format("%Y%m%d"), event)),
                    s(session.clone()),
                    cust.clone(),
                    s(ts(day, secs.min(86_399))),
                    s(kind),
                    s(if kind == "page_view" {
                        "/".to_string()
                    } else {
                        format!("/products/{}", id('P', product + 1, 6))
                    }),
                    if kind == "page_view" {
                        Cell::Null
                    } else {
                        s(id('P', product + 1, 6))
                    },
                    s(device),
                    s(referrer),
                ];
                secs += rng.random_range(5..240);
                if self.defect(&mut rng) {
                    if malformed_ok && rng.random_bool(0.3) {
                        sink.malformed(&format!("E-broken-{event},{session}"))?;
                        sink.defect("malformed_line");
                        continue;
                    }
                    row[3] = s("yesterday at noon");
                    sink.defect("unparseable_timestamp");
                }
                sink.row(&row)?;
            }
        }
        self.finish(sink, "clickstream", "events", day, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: Format) -> Spec {
        Spec {
            orders: 1_000,
            start: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            days: 2,
            format,
            seed: 7,
            defect_rate: 0.05,
            clickstream: true,
        }
    }

    async fn run(format: Format) -> (tempfile::TempDir, Report) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path().to_path_buf());
        storage.init().unwrap();
        let report = generate(&storage, &spec(format), &mut |_| {})
            .await
            .unwrap();
        (dir, report)
    }

    #[tokio::test]
    async fn deterministic_and_counted() {
        let (a, ra) = run(Format::Csv).await;
        let (b, _) = run(Format::Csv).await;
        let orders = "raw/ecommerce/orders/2026-11-20/orders.csv";
        let x = std::fs::read(a.path().join(orders)).unwrap();
        let y = std::fs::read(b.path().join(orders)).unwrap();
        assert_eq!(x, y, "same spec, same bytes");
        let text = String::from_utf8(x).unwrap();
        let f = ra
            .files
            .iter()
            .find(|f| f.uri.ends_with("20/orders.csv"))
            .unwrap();
        assert_eq!(text.lines().count() as u64, f.rows + 1, "header + rows");
        assert_eq!(f.rows, 500);
        assert!(f.defects.values().sum::<u64>() > 5, "{:?}", f.defects);
        let sum = std::fs::read_to_string(a.path().join(format!("{orders}.sha256"))).unwrap();
        assert!(sum.ends_with("  orders.csv\n"));
    }

    #[tokio::test]
    async fn every_format() {
        for format in [Format::Json, Format::Parquet] {
            let (_dir, report) = run(format).await;
            let ext = format.ext();
            assert!(report.files.iter().all(|f| f.uri.ends_with(ext)));
            assert_eq!(report.files.len(), 2 * 4 + 1);
        }
    }
}
