//! Fast text-to-decimal casts.
//!
//! arrow-cast 58 parses each string to `Decimal128` by formatting it into a
//! new `String` and parsing that as an `i256`: about 170 ns a value, the
//! largest single cost of the shipped orders pipeline's transforms. The
//! optimizer rule here rewrites `CAST(text AS DECIMAL(p, s))` and its
//! `TRY_CAST` into a function that parses plain decimals (`[+-]digits[.digits]`
//! with at most `s` fraction digits) directly into the `i128`.
//!
//! Invariant: the result is arrow's cast, value for value. Any string the
//! fast path does not take whole (whitespace, exponents, rounding, overflow,
//! more than `p` digits, garbage) is handed to arrow's cast on its own, so
//! errors, NULLs and rounding stay arrow's.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Builder, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult, exec_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, TryCast, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The rewrite of text-to-`Decimal128` casts (see the module docs).
#[derive(Debug, Default)]
pub struct FastDecimalCasts;

impl OptimizerRule for FastDecimalCasts {
    fn name(&self) -> &str {
        "gridata_fast_decimal_casts"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        // Expressions are typed against the node's inputs.
        let inputs = plan.inputs();
        let schema = match inputs.as_slice() {
            [] => return Ok(Transformed::no(plan)),
            [one] => one.schema().as_ref().clone(),
            [first, rest @ ..] => {
                let mut s = first.schema().as_ref().clone();
                for r in rest {
                    s.merge(r.schema());
                }
                s
            }
        };
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|e| {
            let saved = names.save(&e);
            let out = e.transform_up(|e| rewrite(e, &schema))?;
            Ok(if out.transformed {
                out.update_data(|e| saved.restore(e))
            } else {
                out
            })
        })
    }
}

fn rewrite(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let (inner, to, safe) = match &e {
        Expr::Cast(Cast { expr, data_type }) => (expr, data_type, false),
        Expr::TryCast(TryCast { expr, data_type }) => (expr, data_type, true),
        _ => return Ok(Transformed::no(e)),
    };
    let DataType::Decimal128(precision, scale) = *to else {
        return Ok(Transformed::no(e));
    };
    if scale < 0 {
        return Ok(Transformed::no(e));
    }
    let is_text = matches!(
        inner.get_type(schema),
        Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
    );
    if !is_text {
        return Ok(Transformed::no(e));
    }
    let udf = Arc::new(ScalarUDF::new_from_impl(TextToDecimal {
        precision,
        scale: scale as u8,
        safe,
        signature: Signature::any(1, Volatility::Immutable),
    }));
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(udf, vec![inner.as_ref().clone()]),
    )))
}

/// `CAST(text AS DECIMAL(precision, scale))`, or `TRY_CAST` when `safe`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToDecimal {
    precision: u8,
    scale: u8,
    safe: bool,
    signature: Signature,
}

impl ScalarUDFImpl for TextToDecimal {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        if self.safe {
            "try_cast_to_decimal"
        } else {
            "cast_to_decimal"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(self.data_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = self.safe || args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            self.data_type(),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("{} takes one argument", self.name());
        };
        match arg {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(self.cast(a)?)),
            ColumnarValue::Scalar(s) => {
                let out = self.cast(&s.to_array()?)?;
                Ok(ColumnarValue::Scalar(
                    datafusion::common::ScalarValue::try_from_array(&out, 0)?,
                ))
            }
        }
    }
}

impl TextToDecimal {
    fn data_type(&self) -> DataType {
        DataType::Decimal128(self.precision, self.scale as i8)
    }

    fn cast(&self, a: &ArrayRef) -> DfResult<ArrayRef> {
        let mut out = Decimal128Builder::with_capacity(a.len());
        match a.data_type() {
            DataType::Utf8 => self.each(a.as_string::<i32>().iter(), &mut out)?,
            DataType::LargeUtf8 => self.each(a.as_string::<i64>().iter(), &mut out)?,
            DataType::Utf8View => self.each(a.as_string_view().iter(), &mut out)?,
            _ => {
                let opts = CastOptions {
                    safe: self.safe,
                    ..Default::default()
                };
                return Ok(cast_with_options(a, &self.data_type(), &opts)?);
            }
        }
        Ok(Arc::new(out.finish().with_precision_and_scale(
            self.precision,
            self.scale as i8,
        )?))
    }

    fn each<'a>(
        &self,
        values: impl Iterator<Item = Option<&'a str>>,
        out: &mut Decimal128Builder,
    ) -> DfResult<()> {
        let limit = 10i128.pow(u32::from(self.precision.min(38)));
        for v in values {
            match v {
                None => out.append_null(),
                Some(s) => match parse(s.as_bytes(), self.scale) {
                    Some(x) if x.abs() < limit => out.append_value(x),
                    _ => out.append_option(self.slow(s)?),
                },
            }
        }
        Ok(())
    }

    /// Arrow's cast of one value.
    fn slow(&self, s: &str) -> DfResult<Option<i128>> {
        let one: ArrayRef = Arc::new(StringArray::from(vec![s]));
        let opts = CastOptions {
            safe: self.safe,
            ..Default::default()
        };
        let d = cast_with_options(&one, &self.data_type(), &opts)?;
        let d = d.as_primitive::<Decimal128Type>();
        Ok(d.is_valid(0).then(|| d.value(0)))
    }
}

/// `[+-]digits[.digits]` with at most `scale` fraction digits and at least
/// one digit, scaled to an integer; `None` for anything else.
fn parse(s: &[u8], scale: u8) -> Option<i128> {
    let (negative, rest) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i128 = 0;
    let mut digits = 0usize;
    let mut i = 0;
    while i < rest.len() && rest[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add(i128::from(rest[i] - b'0'))?;
        digits += 1;
        i += 1;
    }
    let mut frac = 0u8;
    if i < rest.len() && rest[i] == b'.' {
        i += 1;
        while i < rest.len() && rest[i].is_ascii_digit() {
            if frac == scale {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(i128::from(rest[i] - b'0'))?;
            frac += 1;
            digits += 1;
            i += 1;
        }
    }
    if i != rest.len() || digits == 0 {
        return None;
    }
    for _ in frac..scale {
        v = v.checked_mul(10)?;
    }
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Decimal128Array;

    fn arrow_cast(
        values: &[Option<&str>],
        p: u8,
        s: i8,
        safe: bool,
    ) -> Result<Vec<Option<i128>>, String> {
        let a: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        let opts = CastOptions {
            safe,
            ..Default::default()
        };
        cast_with_options(&a, &DataType::Decimal128(p, s), &opts)
            .map(|d| d.as_primitive::<Decimal128Type>().iter().collect())
            .map_err(|e| e.to_string())
    }

    fn ours(
        values: &[Option<&str>],
        p: u8,
        s: u8,
        safe: bool,
    ) -> Result<Vec<Option<i128>>, String> {
        let f = TextToDecimal {
            precision: p,
            scale: s,
            safe,
            signature: Signature::any(1, Volatility::Immutable),
        };
        let a: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        f.cast(&a)
            .map(|d| {
                let d = d.as_any().downcast_ref::<Decimal128Array>().unwrap();
                assert_eq!(d.precision(), p);
                d.iter().collect()
            })
            .map_err(|e| e.to_string())
    }

    const SAMPLES: &[&str] = &[
        "0",
        "1",
        "-1",
        "+1",
        "12.5",
        "12.50",
        "12.505",
        "12.504",
        "-12.505",
        "0.01",
        ".5",
        "-.5",
        "5.",
        "007.50",
        "-0",
        "999.99",
        "1000.00",
        "99999999.99",
        "123456789.1",
        " 12.5",
        "12.5 ",
        "1e3",
        "1.2.3",
        "abc",
        "",
        "-",
        "+",
        ".",
        "--1",
        "1-",
        "1,5",
        "0.001",
        "0.005",
        "-0.005",
        "170141183460469231731687303715884105727",
    ];

    #[test]
    fn every_value_matches_arrows_cast() {
        for (p, s) in [(12u8, 2u8), (6, 4), (38, 10), (4, 0), (38, 0), (10, 2)] {
            for v in SAMPLES {
                let one = [Some(*v)];
                assert_eq!(
                    ours(&one, p, s, true),
                    arrow_cast(&one, p, s as i8, true),
                    "TRY_CAST({v:?} AS DECIMAL({p},{s}))"
                );
                assert_eq!(
                    ours(&one, p, s, false).is_ok(),
                    arrow_cast(&one, p, s as i8, false).is_ok(),
                    "CAST({v:?} AS DECIMAL({p},{s})) fails the same way"
                );
                if let Ok(a) = arrow_cast(&one, p, s as i8, false) {
                    assert_eq!(ours(&one, p, s, false).unwrap(), a, "CAST({v:?})");
                }
            }
        }
        let mixed = [Some("1.25"), None, Some("x"), Some("-3")];
        assert_eq!(ours(&mixed, 12, 2, true), arrow_cast(&mixed, 12, 2, true));
    }

    #[test]
    fn the_fast_path_takes_plain_decimals_only() {
        assert_eq!(parse(b"12.5", 2), Some(1250));
        assert_eq!(parse(b"-0.05", 2), Some(-5));
        assert_eq!(parse(b"12.505", 2), None, "rounding is arrow's");
        assert_eq!(parse(b" 1", 2), None, "trimming is arrow's");
        assert_eq!(parse(b"1e2", 2), None);
        assert_eq!(parse(b".", 2), None);
        assert_eq!(parse(b"", 2), None);
    }

    #[tokio::test]
    async fn sql_casts_are_rewritten_and_keep_their_names() {
        use datafusion::execution::SessionStateBuilder;
        use datafusion::prelude::SessionContext;
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_optimizer_rule(Arc::new(FastDecimalCasts))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let df = ctx
            .sql(
                "SELECT CAST(a AS DECIMAL(12,2)) AS d, TRY_CAST(a AS DECIMAL(12,2)), \
                 CAST(CAST(a AS DECIMAL(12,2)) * 2 AS DECIMAL(12,2)) AS twice \
                 FROM (VALUES ('1.5'), ('2.25'), ('x')) AS t(a) WHERE a <> 'x'",
            )
            .await
            .unwrap();
        let plan = format!(
            "{}",
            df.clone().into_optimized_plan().unwrap().display_indent()
        );
        assert!(plan.contains("cast_to_decimal"), "{plan}");
        assert!(plan.contains("try_cast_to_decimal"), "{plan}");
        let names = |s: &datafusion::arrow::datatypes::Schema| -> Vec<String> {
            s.fields().iter().map(|f| f.name().clone()).collect()
        };
        let before = names(df.schema().as_arrow());
        let batches = df.collect().await.unwrap();
        assert_eq!(names(&batches[0].schema()), before);
        let got = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(
            got.contains("1.50") && got.contains("2.25") && got.contains("4.50"),
            "{got}"
        );
    }
}
