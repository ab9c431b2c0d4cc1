//! Label and field selectors: parsed from the `labelSelector` and `fieldSelector` query
//! parameters of list and watch, and matched against stored objects.
//!
//! Both follow Kubernetes 1.33 to the letter, because clients send them verbatim and read back
//! the errors: the grammar, canonical form and messages of k8s.io/apimachinery `pkg/labels`
//! and `pkg/fields`, and kube-apiserver's per-kind field label conversions
//! (`pkg/apis/core/v1/conversion.go` and friends) with the selectable fields the registry
//! computes (`ToSelectableFields` in `pkg/registry/*/strategy.go`). Upstream quirks are kept
//! on purpose, each with a comment where it matters; nothing here panics on any input.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use crate::validation::{self, go_quote};

/// A label selector: requirements that must all hold. No requirement selects everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (stably), as upstream sorts them; this order is the canonical string form.
    requirements: Vec<Requirement>,
}

/// A field selector: `field=value` and `field!=value` terms that must all hold, the fields
/// already resolved against the kind they select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSelector {
    /// In the byte order of the terms' text, as upstream sorts them before parsing.
    terms: Vec<FieldTerm>,
}

/// Why a selector was rejected. The API layer answers 400 BadRequest with the Display as the
/// Status message, which is upstream's message word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Label selector text: a token where the grammar wants another, between requirements.
    #[error("found '{found}'{}", .expected.phrase())]
    UnexpectedToken { found: String, expected: Expected },
    /// Label selector text: one requirement does not parse or is invalid. The message embeds
    /// the cause as upstream's does, so it is not also marked `#[source]` (error chains would
    /// print it twice).
    #[error("unable to parse requirement: {0}")]
    UnparsableRequirement(RequirementError),
    /// A requirement of a metav1 LabelSelector (matchLabels or matchExpressions) is invalid.
    #[error(transparent)]
    InvalidRequirement(RequirementError),
    /// A matchExpressions operator other than In, NotIn, Exists and DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.operator))]
    UnknownOperator { operator: String },
    /// Field selector text: a term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    UnparsableFieldTerm { selector: String, term: String },
    /// Field selector text: a backslash not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    InvalidEscapeSequence { sequence: String },
    /// Field selector text: a `,` or `=` in a value without a backslash. Upstream prints the
    /// character as its code point number (Go's `%v` of a rune), and so does this.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.character))]
    UnescapedCharacter { character: char },
    /// Field selector text: a field the kind cannot be selected by. The wording depends on the
    /// kind, as each upstream conversion function words it its own way.
    #[error("{}", unsupported_field_message(.kind, .field))]
    UnsupportedField { kind: String, field: String },
}

/// Why one label requirement is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// A token where the grammar of a requirement wants another.
    #[error("found '{found}'{}", .expected.phrase())]
    UnexpectedToken { found: String, expected: Expected },
    /// Its key, operator or values break the rules (upstream's aggregated `field.ErrorList`).
    #[error("{}", InvalidFieldsDisplay(.0))]
    InvalidFields(Vec<InvalidField>),
}

/// What the label selector grammar wanted where it found something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    IdentifierAfterComma,
    CommaOrEnd,
    RequirementOrEnd,
    Identifier,
    Operator,
    OpenParenthesis,
    ValueSet,
    CommaOrCloseParenthesis,
    CommaOrIdentifier,
}

/// One invalid part of a requirement, as upstream's `field.Error` of type Invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    /// Upstream's field path: `key`, `values`, `values[0]`, `values[0][app]`, or `<nil>` for a
    /// key in selector text (upstream validates it with no path there).
    pub path: String,
    pub value: InvalidValue,
    /// What is wrong, as upstream words it.
    pub detail: String,
}

/// The offending value of an [`InvalidField`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidValue {
    Text(String),
    Values(Vec<String>),
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h,a==b,x>1,x<1`. Empty text (or only
    /// whitespace) selects everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser::new(text);
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = parser.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::Not => {
                    requirements.push(parser.requirement().map_err(SelectorError::UnparsableRequirement)?);
                    let (token, literal) = parser.consume(Context::Values);
                    match token {
                        Token::End => break,
                        Token::Comma => {
                            let (next, literal) = parser.lookahead(Context::Values);
                            if !matches!(next, Token::Identifier | Token::Not) {
                                return Err(unexpected(literal, Expected::IdentifierAfterComma));
                            }
                        }
                        _ => return Err(unexpected(literal, Expected::CommaOrEnd)),
                    }
                }
                Token::End => break,
                _ => return Err(unexpected(literal, Expected::RequirementOrEnd)),
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// From a metav1 LabelSelector (`spec.selector` of a Deployment, say): matchLabels and
    /// matchExpressions ANDed, as upstream's `LabelSelectorAsSelector`. An empty one selects
    /// everything. (A null one selects nothing upstream; callers holding an `Option` decide.)
    pub fn from_api(selector: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let requirement = Requirement::new(key.clone(), Operator::Equals, vec![value.clone()]);
            requirements.push(requirement.map_err(SelectorError::InvalidRequirement)?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                _ => return Err(SelectorError::UnknownOperator { operator: expression.operator.clone() }),
            };
            let values = expression.values.clone().unwrap_or_default();
            let requirement = Requirement::new(expression.key.clone(), operator, values);
            requirements.push(requirement.map_err(SelectorError::InvalidRequirement)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    pub fn everything() -> Self {
        Self { requirements: Vec::new() }
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Matches against an object's JSON: reads `metadata.labels` (absent means no labels; a
    /// label whose value is not a string counts as absent).
    pub fn matches_object(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.matches_with(|key| labels.get(key).and_then(Value::as_str))
    }

    fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|requirement| requirement.matches(label(&requirement.key)))
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical form, as upstream's `String()`: requirements by key, set values sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl FieldSelector {
    /// Parses `metadata.name=web,spec.nodeName!=,status.phase!=Succeeded` for objects of `kind`
    /// (the Kind name: "Pod", "Event", ...). `=` and `==` are the same; in values `\\`, `\,`
    /// and `\=` stand for the character. Empty text selects everything.
    pub fn parse(kind: &str, text: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(text);
        parts.sort_unstable();
        let mut parsed = Vec::new();
        for part in parts.into_iter().filter(|part| !part.is_empty()) {
            let Some((field, operator, escaped_value)) = split_term(part) else {
                return Err(SelectorError::UnparsableFieldTerm {
                    selector: text.to_owned(),
                    term: part.to_owned(),
                });
            };
            parsed.push((field, operator, unescape_value(escaped_value)?));
        }
        // Upstream converts the field labels only once every term has parsed.
        let labels = field_labels_of(kind);
        let mut terms = Vec::with_capacity(parsed.len());
        for (field, operator, value) in parsed {
            let Some((field, source)) = labels.resolve(field) else {
                return Err(SelectorError::UnsupportedField {
                    kind: kind.to_owned(),
                    field: field.to_owned(),
                });
            };
            terms.push(FieldTerm { field, source, operator, value });
        }
        Ok(Self { terms })
    }

    pub fn everything() -> Self {
        Self { terms: Vec::new() }
    }

    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the object (as JSON) matches. A field missing from the object compares as
    /// upstream's zero value: `""`, or `"false"` and `"0"` for its boolean and integer fields.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|term| {
            let actual = term.source.read(object);
            match term.operator {
                FieldOperator::Equals => actual == term.value,
                FieldOperator::NotEquals => actual != term.value,
            }
        })
    }

    /// If the selector is `metadata.name=x` and nothing else, that name: whether an object
    /// passes then shows in its key.
    pub fn only_name(&self) -> Option<&str> {
        match self.terms.as_slice() {
            [term] if term.field == "metadata.name" && term.operator == FieldOperator::Equals => {
                Some(term.value.as_str())
            }
            _ => None,
        }
    }

    /// If the selector pins `metadata.name` (`metadata.name=x`), that name: lets list use a
    /// single get.
    pub fn exact_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|term| term.field == "metadata.name" && term.operator == FieldOperator::Equals)
            .map(|term| term.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical form, as upstream's `String()`: values escaped, `==` written `=`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, term) in self.terms.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let operator = match term.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{operator}{}", term.field, escape_value(&term.value))?;
        }
        Ok(())
    }
}

impl Expected {
    /// The rest of upstream's message after `found '…'`; one of them lacks the comma upstream.
    fn phrase(self) -> &'static str {
        match self {
            Expected::IdentifierAfterComma => ", expected: identifier after ','",
            Expected::CommaOrEnd => ", expected: ',' or 'end of string'",
            Expected::RequirementOrEnd => ", expected: !, identifier, or 'end of string'",
            Expected::Identifier => ", expected: identifier",
            Expected::Operator => ", expected: in, notin, =, ==, !=, gt, lt",
            Expected::OpenParenthesis => " expected: '('",
            Expected::ValueSet => ", expected: ',', ')' or identifier",
            Expected::CommaOrCloseParenthesis => ", expected: ',' or ')'",
            Expected::CommaOrIdentifier => ", expected: ',', or identifier",
        }
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: Invalid value: {}: {}", self.path, self.value, self.detail)
    }
}

impl fmt::Display for InvalidValue {
    /// As Go prints the value: `%q` for a string, `%#v` for a list of strings. An empty list
    /// prints as Go's nil slice, which is what upstream holds in every case one is reported.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidValue::Text(text) => f.write_str(&go_quote(text)),
            InvalidValue::Values(values) if values.is_empty() => f.write_str("[]string(nil)"),
            InvalidValue::Values(values) => {
                let quoted: Vec<String> = values.iter().map(|value| go_quote(value)).collect();
                write!(f, "[]string{{{}}}", quoted.join(", "))
            }
        }
    }
}

/// Upstream's aggregate of several errors: the one message alone, or all in brackets.
struct InvalidFieldsDisplay<'a>(&'a [InvalidField]);

impl fmt::Display for InvalidFieldsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        match messages.as_slice() {
            [one] => f.write_str(one),
            _ => write!(f, "[{}]", messages.join(", ")),
        }
    }
}

fn unexpected<E: From<(String, Expected)>>(found: &str, expected: Expected) -> E {
    E::from((found.to_owned(), expected))
}

impl From<(String, Expected)> for SelectorError {
    fn from((found, expected): (String, Expected)) -> Self {
        SelectorError::UnexpectedToken { found, expected }
    }
}

impl From<(String, Expected)> for RequirementError {
    fn from((found, expected): (String, Expected)) -> Self {
        RequirementError::UnexpectedToken { found, expected }
    }
}

// ---------------------------------------------------------------------------------------------
// Label requirements.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and deduplicated when parsed from text (upstream collects them in a set); as
    /// given when from a metav1 selector. Matching treats them as a set either way.
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Requirement {
    /// Validates as upstream's `NewRequirement`, collecting every problem.
    fn new(key: String, operator: Operator, values: Vec<String>) -> Result<Self, RequirementError> {
        let mut problems = Vec::new();
        if let Some(detail) = label_key_problems(&key) {
            problems.push(InvalidField {
                path: "key".to_owned(),
                value: InvalidValue::Text(key.clone()),
                detail,
            });
        }
        let values_problem = |detail: &str| InvalidField {
            path: "values".to_owned(),
            value: InvalidValue::Values(values.clone()),
            detail: detail.to_owned(),
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                problems.push(values_problem("for 'in', 'notin' operators, values set can't be empty"));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                problems.push(values_problem("exact-match compatibility requires one single value"));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                problems.push(values_problem("values set must be empty for exists and does not exist"));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    problems.push(values_problem("for 'Gt', 'Lt' operators, exactly one value is required"));
                }
                for (index, value) in values.iter().enumerate() {
                    if value.parse::<i64>().is_err() {
                        problems.push(InvalidField {
                            path: format!("values[{index}]"),
                            value: InvalidValue::Text(value.clone()),
                            detail: "for 'Gt', 'Lt' operators, the value must be an integer".to_owned(),
                        });
                    }
                }
            }
            _ => {}
        }
        for (index, value) in values.iter().enumerate() {
            if let Some(detail) = label_value_problems(value) {
                problems.push(InvalidField {
                    path: format!("values[{index}][{key}]"),
                    value: InvalidValue::Text(value.clone()),
                    detail,
                });
            }
        }
        // Upstream's aggregate drops repeated messages.
        let mut unique: Vec<InvalidField> = Vec::with_capacity(problems.len());
        for problem in problems {
            if !unique.iter().any(|seen| seen.to_string() == problem.to_string()) {
                unique.push(problem);
            }
        }
        if unique.is_empty() {
            Ok(Self { key, operator, values })
        } else {
            Err(RequirementError::InvalidFields(unique))
        }
    }

    fn matches(&self, label: Option<&str>) -> bool {
        let has = |value: &str| self.values.iter().any(|candidate| candidate == value);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => label.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => label.is_none_or(|value| !has(value)),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(label), [bound]) = (label, self.values.as_slice()) else { return false };
                let (Ok(label), Ok(bound)) = (label.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { label > bound } else { label < bound }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let operator = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        write!(
            f,
            "{operator}{}{}{}",
            if set { "(" } else { "" },
            values.join(","),
            if set { ")" } else { "" }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The label selector lexer and parser, a recursive descent over a token list as upstream's.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    Identifier,
    In,
    NotIn,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    OpenParenthesis,
    CloseParenthesis,
    Comma,
}

/// Whether `in` and `notin` are keywords (between a key and its values) or plain identifiers
/// (anywhere else: `in in (in)` is a valid requirement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    /// Ends with exactly one `Token::End`.
    tokens: Vec<(Token, &'a str)>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let mut lexer = Lexer { text, position: 0 };
        let mut tokens = Vec::new();
        loop {
            let token = lexer.next_token();
            tokens.push(token);
            if token.0 == Token::End {
                return Self { tokens, position: 0 };
            }
        }
    }

    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        let (token, literal) = self.tokens.get(self.position).copied().unwrap_or((Token::End, ""));
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let token = self.lookahead(context);
        self.position += 1;
        token
    }

    fn requirement(&mut self) -> Result<Requirement, RequirementError> {
        let (key, inferred) = self.key_and_inferred_operator()?;
        if let Some(operator) = inferred {
            return Requirement::new(key.to_owned(), operator, Vec::new());
        }
        let operator = self.operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(key.to_owned(), operator, values)
    }

    /// The key, and `Exists` or `DoesNotExist` if that is the whole requirement.
    fn key_and_inferred_operator(&mut self) -> Result<(&'a str, Option<Operator>), RequirementError> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let does_not_exist = token == Token::Not;
        if does_not_exist {
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(unexpected(literal, Expected::Identifier));
        }
        if let Some(detail) = label_key_problems(literal) {
            let value = InvalidValue::Text(literal.to_owned());
            return Err(RequirementError::InvalidFields(vec![InvalidField {
                path: "<nil>".to_owned(),
                value,
                detail,
            }]));
        }
        // `!key` is complete whatever follows; what follows is then the parser's problem.
        if does_not_exist {
            return Ok((literal, Some(Operator::DoesNotExist)));
        }
        let (next, _) = self.lookahead(Context::Values);
        Ok((literal, matches!(next, Token::End | Token::Comma).then_some(Operator::Exists)))
    }

    fn operator(&mut self) -> Result<Operator, RequirementError> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        match token {
            Token::In => Ok(Operator::In),
            Token::NotIn => Ok(Operator::NotIn),
            Token::Equals => Ok(Operator::Equals),
            Token::DoubleEquals => Ok(Operator::DoubleEquals),
            Token::NotEquals => Ok(Operator::NotEquals),
            Token::GreaterThan => Ok(Operator::GreaterThan),
            Token::LessThan => Ok(Operator::LessThan),
            _ => Err(unexpected(literal, Expected::Operator)),
        }
    }

    /// `(a,b,c)`; empty entries are the empty value: `()` is `{""}`, `(a,,b)` is `{"", a, b}`.
    fn value_set(&mut self) -> Result<Vec<String>, RequirementError> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenParenthesis {
            return Err(unexpected(literal, Expected::OpenParenthesis));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.value_list()?;
                let (token, _) = self.consume(Context::Values);
                assert_eq!(token, Token::CloseParenthesis, "value_list returns only before a ')'");
                Ok(values.into_iter().map(str::to_owned).collect())
            }
            Token::CloseParenthesis => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(unexpected(literal, Expected::ValueSet)),
        }
    }

    /// The values up to (not including) the closing parenthesis.
    fn value_list(&mut self) -> Result<BTreeSet<&'a str>, RequirementError> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal);
                    match self.lookahead(Context::Values) {
                        (Token::Comma, _) => {}
                        (Token::CloseParenthesis, _) => return Ok(values),
                        (_, literal) => return Err(unexpected(literal, Expected::CommaOrCloseParenthesis)),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert("");
                    }
                    match self.lookahead(Context::Values).0 {
                        Token::CloseParenthesis => {
                            values.insert("");
                            return Ok(values);
                        }
                        Token::Comma => {
                            values.insert("");
                        }
                        _ => {}
                    }
                }
                _ => return Err(unexpected(literal, Expected::CommaOrIdentifier)),
            }
        }
    }

    /// The one value after `=`, `==`, `!=`, `>` or `<`; nothing is the empty value.
    fn exact_value(&mut self) -> Result<Vec<String>, RequirementError> {
        if matches!(self.lookahead(Context::Values).0, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.consume(Context::Values) {
            (Token::Identifier, literal) => Ok(vec![literal.to_owned()]),
            (_, literal) => Err(unexpected(literal, Expected::Identifier)),
        }
    }
}

/// Splits label selector text into tokens. It works on bytes: every delimiter is ASCII, so
/// the literals it cuts are whole UTF-8. Like upstream's lexer it takes a NUL byte for the end
/// of the text where it reads one, and skips over it.
struct Lexer<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Lexer<'a> {
    fn next_token(&mut self) -> (Token, &'a str) {
        let bytes = self.text.as_bytes();
        while bytes.get(self.position).is_some_and(|&byte| is_label_whitespace(byte)) {
            self.position += 1;
        }
        match bytes.get(self.position) {
            None | Some(0) => {
                self.position += 1;
                (Token::End, "")
            }
            Some(&byte) if is_label_symbol(byte) => self.symbol(),
            Some(_) => self.identifier_or_keyword(),
        }
    }

    fn symbol(&mut self) -> (Token, &'a str) {
        let bytes = self.text.as_bytes();
        let start = self.position;
        let two_bytes = match (bytes.get(start), bytes.get(start + 1)) {
            (Some(b'!'), Some(b'=')) => Some(Token::NotEquals),
            (Some(b'='), Some(b'=')) => Some(Token::DoubleEquals),
            _ => None,
        };
        let token = match two_bytes {
            Some(token) => token,
            None => match bytes.get(start) {
                Some(b'!') => Token::Not,
                Some(b'=') => Token::Equals,
                Some(b'>') => Token::GreaterThan,
                Some(b'<') => Token::LessThan,
                Some(b'(') => Token::OpenParenthesis,
                Some(b')') => Token::CloseParenthesis,
                _ => Token::Comma,
            },
        };
        self.position += if two_bytes.is_some() { 2 } else { 1 };
        let literal = &self.text[start..self.position];
        // Upstream reads one byte past a symbol to see whether it grows; a NUL read there is
        // consumed rather than put back.
        if bytes.get(self.position) == Some(&0) {
            self.position += 1;
        }
        (token, literal)
    }

    fn identifier_or_keyword(&mut self) -> (Token, &'a str) {
        let bytes = self.text.as_bytes();
        let start = self.position;
        while let Some(&byte) = bytes.get(self.position) {
            if byte == 0 || is_label_symbol(byte) || is_label_whitespace(byte) {
                break;
            }
            self.position += 1;
        }
        let literal = &self.text[start..self.position];
        if bytes.get(self.position) == Some(&0) {
            self.position += 1;
        }
        let token = match literal {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        (token, literal)
    }
}

fn is_label_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_label_symbol(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

// ---------------------------------------------------------------------------------------------
// Label key and value rules: upstream's `IsQualifiedName` and `IsValidLabelValue`, which
// `validation` implements for object metadata too.

/// What is wrong with a label key (`[prefix/]name`), upstream's messages joined by "; ".
fn label_key_problems(key: &str) -> Option<String> {
    let problems = validation::is_qualified_name(key);
    (!problems.is_empty()).then(|| problems.join("; "))
}

fn label_value_problems(value: &str) -> Option<String> {
    let problems = validation::is_label_value(value);
    (!problems.is_empty()).then(|| problems.join("; "))
}

// ---------------------------------------------------------------------------------------------
// Field selector terms, escaping, and the fields each kind can be selected by.

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    /// The field label after conversion (Pod's legacy `spec.host` becomes `spec.nodeName`).
    field: String,
    source: FieldSource,
    operator: FieldOperator,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldOperator {
    Equals,
    NotEquals,
}

/// Where a field label's value comes from in the object's JSON, and its zero value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldSource {
    /// A string (zero value `""`).
    Text(&'static [&'static str]),
    /// A boolean (zero value `"false"`).
    Boolean(&'static [&'static str]),
    /// An integer (zero value `"0"`).
    Integer(&'static [&'static str]),
    /// Pod `status.podIP`: upstream reads the first of `status.podIPs` after conversion, which
    /// makes `status.podIP` win when both are set.
    PodIp,
    /// Event `source`: `source.component`, else `reportingComponent`.
    EventSource,
    /// Accepted but never filled in by upstream's selectable fields, so always `""`: Pod
    /// `status.podIPs`.
    AlwaysEmpty,
}

impl FieldSource {
    fn read<'a>(self, object: &'a Value) -> Cow<'a, str> {
        match self {
            FieldSource::Text(path) => scalar_text(at_path(object, path)).unwrap_or(Cow::Borrowed("")),
            FieldSource::Boolean(path) => {
                scalar_text(at_path(object, path)).unwrap_or(Cow::Borrowed("false"))
            }
            FieldSource::Integer(path) => scalar_text(at_path(object, path)).unwrap_or(Cow::Borrowed("0")),
            FieldSource::PodIp => {
                let status = &object["status"];
                match status["podIP"].as_str() {
                    Some(ip) if !ip.is_empty() => Cow::Borrowed(ip),
                    _ => Cow::Borrowed(status["podIPs"][0]["ip"].as_str().unwrap_or("")),
                }
            }
            FieldSource::EventSource => match object["source"]["component"].as_str() {
                Some(component) if !component.is_empty() => Cow::Borrowed(component),
                _ => Cow::Borrowed(object["reportingComponent"].as_str().unwrap_or("")),
            },
            FieldSource::AlwaysEmpty => Cow::Borrowed(""),
        }
    }
}

fn at_path<'a>(object: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(object, |value, segment| &value[*segment])
}

/// A string, boolean or number as upstream prints it into a field set; None for anything else.
fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(text) => Some(Cow::Borrowed(text)),
        Value::Bool(flag) => Some(Cow::Borrowed(if *flag { "true" } else { "false" })),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        _ => None,
    }
}

/// The field labels a kind accepts, as its upstream conversion function lists them.
#[derive(Debug)]
struct FieldLabels {
    kind: &'static str,
    labels: &'static [(&'static str, FieldSource)],
    /// Old names the conversion renames: (accepted label, label it stands for).
    aliases: &'static [(&'static str, &'static str)],
    wording: UnsupportedWording,
}

/// How a kind's conversion function words a field label it does not support.
#[derive(Debug, Clone, Copy)]
enum UnsupportedWording {
    /// `field label not supported: spec.foo` (core/v1 kinds, certificates).
    FieldLabelNotSupported,
    /// `field label "spec.foo" not supported for batchv1.Job`.
    JobFieldLabelNotSupported,
    /// `"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"`
    /// (every kind without a conversion function of its own).
    UnknownFieldSelector,
}

impl FieldLabels {
    fn resolve(&self, label: &str) -> Option<(String, FieldSource)> {
        let label =
            self.aliases.iter().find(|(alias, _)| *alias == label).map_or(label, |(_, target)| *target);
        let (label, source) = self.labels.iter().find(|(known, _)| *known == label)?;
        Some(((*label).to_owned(), *source))
    }
}

const NAME: (&str, FieldSource) = ("metadata.name", FieldSource::Text(&["metadata", "name"]));
const NAMESPACE: (&str, FieldSource) = ("metadata.namespace", FieldSource::Text(&["metadata", "namespace"]));

const fn text(label: &'static str, path: &'static [&'static str]) -> (&'static str, FieldSource) {
    (label, FieldSource::Text(path))
}

/// Kubernetes 1.33. ReplicaSet, Deployment, StatefulSet and the rest have no conversion
/// function in their served versions, so they accept only metadata (upstream's ReplicaSet
/// registry lists `status.replicas`, but the request is refused before it gets there).
const FIELD_LABELS: &[FieldLabels] = &[
    FieldLabels {
        kind: "Pod",
        labels: &[
            NAME,
            NAMESPACE,
            text("spec.nodeName", &["spec", "nodeName"]),
            text("spec.restartPolicy", &["spec", "restartPolicy"]),
            text("spec.schedulerName", &["spec", "schedulerName"]),
            text("spec.serviceAccountName", &["spec", "serviceAccountName"]),
            ("spec.hostNetwork", FieldSource::Boolean(&["spec", "hostNetwork"])),
            text("status.phase", &["status", "phase"]),
            ("status.podIP", FieldSource::PodIp),
            ("status.podIPs", FieldSource::AlwaysEmpty),
            text("status.nominatedNodeName", &["status", "nominatedNodeName"]),
        ],
        aliases: &[("spec.host", "spec.nodeName")],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
    FieldLabels {
        kind: "Event",
        labels: &[
            text("involvedObject.kind", &["involvedObject", "kind"]),
            text("involvedObject.namespace", &["involvedObject", "namespace"]),
            text("involvedObject.name", &["involvedObject", "name"]),
            text("involvedObject.uid", &["involvedObject", "uid"]),
            text("involvedObject.apiVersion", &["involvedObject", "apiVersion"]),
            text("involvedObject.resourceVersion", &["involvedObject", "resourceVersion"]),
            text("involvedObject.fieldPath", &["involvedObject", "fieldPath"]),
            text("reason", &["reason"]),
            text("reportingComponent", &["reportingComponent"]),
            ("source", FieldSource::EventSource),
            text("type", &["type"]),
            NAMESPACE,
            NAME,
        ],
        aliases: &[],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
    FieldLabels {
        kind: "Node",
        labels: &[NAME, ("spec.unschedulable", FieldSource::Boolean(&["spec", "unschedulable"]))],
        aliases: &[],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
    FieldLabels {
        kind: "Namespace",
        labels: &[text("status.phase", &["status", "phase"]), NAME],
        aliases: &[],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
    FieldLabels {
        kind: "Secret",
        labels: &[text("type", &["type"]), NAMESPACE, NAME],
        aliases: &[],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
    FieldLabels {
        kind: "Service",
        labels: &[
            NAMESPACE,
            NAME,
            text("spec.clusterIP", &["spec", "clusterIP"]),
            text("spec.type", &["spec", "type"]),
        ],
        aliases: &[],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
    FieldLabels {
        kind: "ReplicationController",
        labels: &[NAME, NAMESPACE, ("status.replicas", FieldSource::Integer(&["status", "replicas"]))],
        aliases: &[],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
    FieldLabels {
        kind: "Job",
        labels: &[NAME, NAMESPACE, ("status.successful", FieldSource::Integer(&["status", "succeeded"]))],
        aliases: &[],
        wording: UnsupportedWording::JobFieldLabelNotSupported,
    },
    FieldLabels {
        kind: "CertificateSigningRequest",
        labels: &[NAME, text("spec.signerName", &["spec", "signerName"])],
        aliases: &[],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
    FieldLabels {
        kind: "ClusterTrustBundle",
        labels: &[NAME, text("spec.signerName", &["spec", "signerName"])],
        aliases: &[],
        wording: UnsupportedWording::FieldLabelNotSupported,
    },
];

const METADATA_ONLY: FieldLabels = FieldLabels {
    kind: "",
    labels: &[NAME, NAMESPACE],
    aliases: &[],
    wording: UnsupportedWording::UnknownFieldSelector,
};

fn field_labels_of(kind: &str) -> &'static FieldLabels {
    FIELD_LABELS.iter().find(|labels| labels.kind == kind).unwrap_or(&METADATA_ONLY)
}

fn unsupported_field_message(kind: &str, field: &str) -> String {
    match field_labels_of(kind).wording {
        UnsupportedWording::FieldLabelNotSupported => format!("field label not supported: {field}"),
        UnsupportedWording::JobFieldLabelNotSupported => {
            format!("field label {} not supported for batchv1.Job", go_quote(field))
        }
        UnsupportedWording::UnknownFieldSelector => format!(
            "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            go_quote(field)
        ),
    }
}

/// Splits at commas not escaped by a backslash; the escapes stay in the terms.
fn split_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Splits a term at the first operator: the field has no escapes, so its first `!=`, `==` or
/// `=` ends it. The value comes back still escaped.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] =
        [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)];
    term.char_indices().find_map(|(index, _)| {
        let rest = &term[index..];
        OPERATORS.iter().find_map(|(symbol, operator)| {
            rest.strip_prefix(symbol).map(|value| (&term[..index], *operator, value))
        })
    })
}

fn unescape_value(escaped: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(escaped.len());
    let mut in_escape = false;
    for character in escaped.chars() {
        if in_escape {
            if !matches!(character, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscapeSequence { sequence: format!("\\{character}") });
            }
            value.push(character);
            in_escape = false;
            continue;
        }
        match character {
            '\\' => in_escape = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter { character }),
            _ => value.push(character),
        }
    }
    if in_escape {
        return Err(SelectorError::InvalidEscapeSequence { sequence: "\\".to_owned() });
    }
    Ok(value)
}

fn escape_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', ',', '=']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 4);
    for character in value.chars() {
        if matches!(character, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Upstream's rule texts, as the expected messages quote them.
    const QUALIFIED_NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must \
        start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used \
        for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const DNS_SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
        characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
        regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric \
        characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  \
        or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    fn check_label_match(selector: &str, pairs: &[(&str, &str)], expected: bool) {
        let parsed = LabelSelector::parse(selector).unwrap_or_else(|error| panic!("{selector:?}: {error}"));
        assert_eq!(parsed.matches(&labels(pairs)), expected, "{selector:?} against {pairs:?}");
        let object = json!({"metadata": {"labels": labels(pairs)}});
        assert_eq!(parsed.matches_object(&object), expected, "{selector:?} against the object of {pairs:?}");
    }

    #[test]
    fn label_selectors_match_as_upstream() {
        // Each selector kind against label sets that do and do not satisfy it, upstream's
        // TestSelectorMatches cases plus the set-based forms and whitespace.
        check_label_match("", &[("x", "y")], true);
        check_label_match("   ", &[], true);
        check_label_match("x=y", &[("x", "y")], true);
        check_label_match("x=y", &[("x", "z")], false);
        check_label_match("x=y", &[], false);
        check_label_match("x==y", &[("x", "y")], true);
        check_label_match("x=y,z=w", &[("x", "y"), ("z", "w")], true);
        check_label_match("x=y,z=w", &[("x", "w"), ("z", "w")], false);
        check_label_match("x!=y,z!=w", &[("x", "z"), ("z", "a")], true);
        check_label_match("x!=y,z!=w", &[("x", "z"), ("z", "w")], false);
        check_label_match("x!=y", &[], true);
        check_label_match("notin=in", &[("notin", "in")], true);
        check_label_match("x", &[("x", "z")], true);
        check_label_match("x", &[("y", "z")], false);
        check_label_match("!x", &[("y", "z")], true);
        check_label_match("!x", &[("x", "z")], false);
        check_label_match("x>1", &[("x", "2")], true);
        check_label_match("x>1", &[("x", "0")], false);
        check_label_match("x>1", &[("x", "a")], false);
        check_label_match("x>1", &[], false);
        check_label_match("x<1", &[("x", "0")], true);
        check_label_match("x<1", &[("x", "2")], false);
        check_label_match("x in (a,b)", &[("x", "b")], true);
        check_label_match("x in (a,b)", &[("x", "c")], false);
        check_label_match("x in (a,b)", &[], false);
        check_label_match("x notin (a,b)", &[("x", "c")], true);
        check_label_match("x notin (a,b)", &[("x", "a")], false);
        check_label_match("x notin (a,b)", &[], true);
        check_label_match("x in ()", &[("x", "")], true);
        check_label_match("x in (,a)", &[("x", "")], true);
        check_label_match("x=", &[("x", "")], true);
        check_label_match("x=", &[("x", "a")], false);
        check_label_match(" x = y , z in(w) ,\t!v ", &[("x", "y"), ("z", "w")], true);
        check_label_match("in in (in)", &[("in", "in")], true);
        check_label_match("app.kubernetes.io/name=web", &[("app.kubernetes.io/name", "web")], true);
    }

    #[test]
    fn label_selector_reads_labels_of_objects() {
        // An object without metadata.labels has no labels; a non-string label value is absent.
        let selector = LabelSelector::parse("!app,tier notin (db)").unwrap();
        assert!(selector.matches_object(&json!({"metadata": {"name": "web"}})));
        assert!(selector.matches_object(&json!({})));
        assert!(selector.matches_object(&json!({"metadata": {"labels": {"app": 1}}})));
        assert!(!selector.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
    }

    fn check_label_display(selector: &str, expected: &str) {
        let parsed = LabelSelector::parse(selector).unwrap_or_else(|error| panic!("{selector:?}: {error}"));
        assert_eq!(parsed.to_string(), expected, "{selector:?}");
        assert_eq!(LabelSelector::parse(expected).unwrap(), parsed, "{expected:?} parses back");
    }

    #[test]
    fn label_selectors_print_canonically() {
        // Requirements sort by key, set values sort and deduplicate, operators keep their
        // spelling, whitespace goes (upstream's TestToString and friends).
        check_label_display("", "");
        check_label_display("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()");
        check_label_display("z=1, a!=2 ,m==3", "a!=2,m==3,z=1");
        check_label_display("x in (b,a,b)", "x in (a,b)");
        check_label_display("!b,a", "a,!b");
        check_label_display("x>1,x<5", "x>1,x<5");
        check_label_display("x=", "x=");
        check_label_display("x in(a)", "x in (a)");
        check_label_display("a \0garbage", "a");
    }

    fn check_label_error(selector: &str, expected: &str) {
        match LabelSelector::parse(selector) {
            Ok(parsed) => panic!("{selector:?} parsed as {parsed}"),
            Err(error) => assert_eq!(error.to_string(), expected, "{selector:?}"),
        }
    }

    #[test]
    fn label_selector_errors_read_as_upstream() {
        // Syntax errors between and inside requirements, and invalid keys and values, each
        // with upstream's exact message.
        check_label_error("a in b", "unable to parse requirement: found 'b' expected: '('");
        check_label_error("=x", "found '=', expected: !, identifier, or 'end of string'");
        check_label_error(",", "found ',', expected: !, identifier, or 'end of string'");
        check_label_error("a=b c", "found 'c', expected: ',' or 'end of string'");
        check_label_error("a,", "found '', expected: identifier after ','");
        check_label_error("!a=b", "found '=', expected: ',' or 'end of string'");
        check_label_error(
            "a b",
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
        );
        check_label_error("a in", "unable to parse requirement: found '' expected: '('");
        check_label_error("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'");
        check_label_error("a in (b", "unable to parse requirement: found '', expected: ',' or ')'");
        check_label_error(
            "a in (=)",
            "unable to parse requirement: found '=', expected: ',', ')' or identifier",
        );
        check_label_error(
            "a in (b,=)",
            "unable to parse requirement: found '=', expected: ',', or identifier",
        );
        check_label_error("!", "unable to parse requirement: found '', expected: identifier");
        check_label_error("a=(", "unable to parse requirement: found '(', expected: identifier");
        let long_key = "k".repeat(64);
        check_label_error(
            &long_key,
            &format!(
                "unable to parse requirement: <nil>: Invalid value: \"{long_key}\": name part must be no more \
                 than 63 characters"
            ),
        );
        check_label_error(
            "-a",
            &format!(
                "unable to parse requirement: <nil>: Invalid value: \"-a\": name part {QUALIFIED_NAME_RULE}"
            ),
        );
        check_label_error(
            "/a",
            "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty",
        );
        check_label_error(
            "Example.com/a",
            &format!(
                "unable to parse requirement: <nil>: Invalid value: \"Example.com/a\": prefix part \
                 {DNS_SUBDOMAIN_RULE}"
            ),
        );
        check_label_error(
            "a/b/c",
            &format!(
                "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name \
                 {QUALIFIED_NAME_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ),
        );
        check_label_error(
            "a=-b",
            &format!("unable to parse requirement: values[0][a]: Invalid value: \"-b\": {LABEL_VALUE_RULE}"),
        );
        check_label_error(
            "x=a||y=b",
            &format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {LABEL_VALUE_RULE}"
            ),
        );
        let long_value = "v".repeat(64);
        check_label_error(
            &format!("a={long_value}"),
            &format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"{long_value}\": must be no more \
                 than 63 characters"
            ),
        );
        check_label_error(
            "x>a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value \
             must be an integer",
        );
        check_label_error(
            "x>",
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value \
             must be an integer",
        );
        check_label_error(
            "x>-1",
            &format!("unable to parse requirement: values[0][x]: Invalid value: \"-1\": {LABEL_VALUE_RULE}"),
        );
        check_label_error(
            "a=\"q\"",
            &format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"\\\"q\\\"\": {LABEL_VALUE_RULE}"
            ),
        );
    }

    fn check_from_api(selector: Value, expected: Result<&str, &str>) {
        let api: metav1::LabelSelector = serde_json::from_value(selector.clone()).unwrap();
        let actual =
            LabelSelector::from_api(&api).map(|parsed| parsed.to_string()).map_err(|error| error.to_string());
        assert_eq!(actual, expected.map(str::to_owned).map_err(str::to_owned), "{selector}");
    }

    #[test]
    fn api_label_selectors_convert_as_upstream() {
        // matchLabels and matchExpressions become requirements sorted by key; the invalid ones
        // fail with LabelSelectorAsSelector's messages (In without values among them).
        check_from_api(json!({}), Ok(""));
        check_from_api(json!({"matchLabels": {}, "matchExpressions": []}), Ok(""));
        check_from_api(json!({"matchLabels": {"tier": "fe", "app": "web"}}), Ok("app=web,tier=fe"));
        check_from_api(
            json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["b", "a"]}]}),
            Ok("env in (a,b)"),
        );
        check_from_api(
            json!({"matchLabels": {"z": "1"}, "matchExpressions": [
                {"key": "a", "operator": "Exists"},
                {"key": "m", "operator": "DoesNotExist"},
                {"key": "n", "operator": "NotIn", "values": ["x"]},
            ]}),
            Ok("a,!m,n notin (x),z=1"),
        );
        check_from_api(
            json!({"matchExpressions": [{"key": "env", "operator": "In", "values": []}]}),
            Err(
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
            ),
        );
        check_from_api(
            json!({"matchExpressions": [{"key": "env", "operator": "NotIn"}]}),
            Err(
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
            ),
        );
        check_from_api(
            json!({"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["x", "y"]}]}),
            Err(
                "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for exists and does not exist",
            ),
        );
        check_from_api(
            json!({"matchExpressions": [{"key": "env", "operator": "Gt", "values": ["1"]}]}),
            Err("\"Gt\" is not a valid label selector operator"),
        );
        check_from_api(
            json!({"matchLabels": {"app": "a b"}}),
            Err(format!("values[0][app]: Invalid value: \"a b\": {LABEL_VALUE_RULE}").as_str()),
        );
        check_from_api(
            json!({"matchExpressions": [{"key": "-k", "operator": "In", "values": []}]}),
            Err(format!(
                "[key: Invalid value: \"-k\": name part {QUALIFIED_NAME_RULE}, values: Invalid value: \
                 []string(nil): for 'in', 'notin' operators, values set can't be empty]"
            )
            .as_str()),
        );
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({"kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec, "status": status})
    }

    fn check_field(kind: &str, selector: &str, object: &Value, expected: bool) {
        let parsed =
            FieldSelector::parse(kind, selector).unwrap_or_else(|error| panic!("{selector:?}: {error}"));
        assert_eq!(parsed.matches(object), expected, "{kind} {selector:?} against {object}");
    }

    #[test]
    fn pod_field_selectors_match_as_upstream() {
        // The kubelet's and the scheduler's selectors, missing fields as zero values, the
        // legacy spec.host alias, and status.podIPs (accepted but never set upstream).
        let pending = pod(json!({"restartPolicy": "Always"}), json!({"phase": "Pending"}));
        let running = pod(
            json!({"nodeName": "node-1", "hostNetwork": true}),
            json!({"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}),
        );
        let succeeded =
            pod(json!({"nodeName": "node-1"}), json!({"phase": "Succeeded", "podIPs": [{"ip": "10.0.0.6"}]}));
        check_field("Pod", "", &pending, true);
        check_field("Pod", "spec.nodeName=", &pending, true);
        check_field("Pod", "spec.nodeName=", &running, false);
        check_field("Pod", "spec.nodeName!=", &running, true);
        check_field("Pod", "spec.nodeName=node-1", &running, true);
        check_field("Pod", "spec.host=node-1", &running, true);
        check_field("Pod", "status.phase!=Succeeded,status.phase!=Failed", &running, true);
        check_field("Pod", "status.phase!=Succeeded,status.phase!=Failed", &succeeded, false);
        check_field("Pod", "spec.nodeName=node-1,status.phase!=Succeeded", &succeeded, false);
        check_field("Pod", "spec.hostNetwork=false", &pending, true);
        check_field("Pod", "spec.hostNetwork=true", &running, true);
        check_field("Pod", "spec.restartPolicy=Always", &pending, true);
        check_field("Pod", "status.podIP=10.0.0.5", &running, true);
        check_field("Pod", "status.podIP=10.0.0.6", &succeeded, true);
        check_field("Pod", "status.podIPs=10.0.0.5", &running, false);
        check_field("Pod", "metadata.name=web,metadata.namespace=default", &running, true);
        check_field("Pod", "metadata.name==web", &running, true);
        check_field("Pod", "metadata.namespace!=default", &running, false);
    }

    #[test]
    fn event_and_other_field_selectors_match_as_upstream() {
        // kubectl describe's involvedObject selector, Event's source fallback, and the typed
        // zero values of Node, ReplicationController and Job fields.
        let event = json!({
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u-1",
                               "apiVersion": "v1", "fieldPath": "spec.containers{app}"},
            "reason": "Scheduled", "type": "Normal", "source": {"component": "default-scheduler"},
        });
        let described = "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Pod,\
                         involvedObject.uid=u-1";
        check_field("Event", described, &event, true);
        check_field("Event", "involvedObject.kind=Node", &event, false);
        check_field(
            "Event",
            "involvedObject.apiVersion=v1,involvedObject.fieldPath=spec.containers{app}",
            &event,
            true,
        );
        check_field("Event", "involvedObject.resourceVersion=", &event, true);
        check_field("Event", "reason=Scheduled,type=Normal,source=default-scheduler", &event, true);
        let reported = json!({"reportingComponent": "kubelet", "source": {}});
        check_field("Event", "source=kubelet,reportingComponent=kubelet", &reported, true);
        check_field("Node", "spec.unschedulable=false", &json!({"metadata": {"name": "n"}}), true);
        check_field("Node", "spec.unschedulable=true", &json!({"spec": {"unschedulable": true}}), true);
        check_field("ReplicationController", "status.replicas=0", &json!({}), true);
        check_field("ReplicationController", "status.replicas=3", &json!({"status": {"replicas": 3}}), true);
        check_field("Job", "status.successful=1", &json!({"status": {"succeeded": 1}}), true);
        check_field("Secret", "type=kubernetes.io/tls", &json!({"type": "kubernetes.io/tls"}), true);
        check_field(
            "Service",
            "spec.clusterIP!=None,spec.type=ClusterIP",
            &json!({"spec": {"type": "ClusterIP"}}),
            true,
        );
        check_field("Namespace", "status.phase=Active", &json!({"status": {"phase": "Active"}}), true);
        check_field("ConfigMap", "metadata.namespace=", &json!({"metadata": {"name": "c"}}), true);
    }

    fn check_field_error(kind: &str, selector: &str, expected: &str) {
        match FieldSelector::parse(kind, selector) {
            Ok(parsed) => panic!("{kind} {selector:?} parsed as {parsed}"),
            Err(error) => assert_eq!(error.to_string(), expected, "{kind} {selector:?}"),
        }
    }

    #[test]
    fn field_selector_errors_read_as_upstream() {
        // Unsupported fields in each kind's wording (the first in sorted term order), terms
        // without an operator, and bad escapes.
        check_field_error("Pod", "spec.foo=x", "field label not supported: spec.foo");
        check_field_error("Pod", "spec.zzz=1,spec.aaa=2", "field label not supported: spec.aaa");
        check_field_error("Event", "regarding.name=x", "field label not supported: regarding.name");
        check_field_error("Node", "metadata.namespace=x", "field label not supported: metadata.namespace");
        check_field_error(
            "Namespace",
            "metadata.namespace=x",
            "field label not supported: metadata.namespace",
        );
        check_field_error(
            "Job",
            "status.succeeded=1",
            "field label \"status.succeeded\" not supported for batchv1.Job",
        );
        let not_known = "is not a known field selector: only \"metadata.name\", \"metadata.namespace\"";
        check_field_error("Deployment", "spec.foo=x", &format!("\"spec.foo\" {not_known}"));
        check_field_error("ReplicaSet", "status.replicas=1", &format!("\"status.replicas\" {not_known}"));
        check_field_error("ConfigMap", "=x", &format!("\"\" {not_known}"));
        check_field_error("Pod", "foo", "invalid selector: 'foo'; can't understand 'foo'");
        check_field_error(
            "Pod",
            "spec.nodeName=a,foo",
            "invalid selector: 'spec.nodeName=a,foo'; can't understand 'foo'",
        );
        check_field_error(
            "Pod",
            "metadata.name=a=b",
            "invalid field selector: unescaped character in value: 61",
        );
        check_field_error(
            "Pod",
            "metadata.name=a\\x",
            "invalid field selector: invalid escape sequence: \\x",
        );
        check_field_error("Pod", "metadata.name=a\\", "invalid field selector: invalid escape sequence: \\");
        check_field_error(
            "Pod",
            "spec.foo=x,bad",
            "invalid selector: 'spec.foo=x,bad'; can't understand 'bad'",
        );
    }

    fn check_field_escape(selector: &str, name: &str, canonical: &str) {
        let parsed =
            FieldSelector::parse("Pod", selector).unwrap_or_else(|error| panic!("{selector:?}: {error}"));
        assert_eq!(parsed.exact_name(), Some(name), "{selector:?}");
        assert_eq!(parsed.to_string(), canonical, "{selector:?}");
        assert!(parsed.matches(&json!({"metadata": {"name": name}})), "{selector:?}");
    }

    #[test]
    fn field_selector_values_unescape_and_escape() {
        // Backslash escapes of `\`, `,` and `=` in values: unescaped for matching, escaped
        // again in the canonical form, and an escaped comma does not split terms.
        check_field_escape("metadata.name=web", "web", "metadata.name=web");
        check_field_escape("metadata.name=a\\,b", "a,b", "metadata.name=a\\,b");
        check_field_escape("metadata.name==a\\=b\\\\c", "a=b\\c", "metadata.name=a\\=b\\\\c");
        check_field_escape(
            "metadata.name=a\\,b,status.phase!=x",
            "a,b",
            "metadata.name=a\\,b,status.phase!=x",
        );
        check_field_escape("spec.host=,metadata.name=é", "é", "metadata.name=é,spec.nodeName=");
    }

    #[test]
    fn only_name_when_nothing_else_is_asked() {
        let only_name =
            |selector: &str| FieldSelector::parse("Pod", selector).unwrap().only_name().map(str::to_owned);
        assert_eq!(only_name("metadata.name=web"), Some("web".to_owned()));
        assert_eq!(only_name("metadata.name==web"), Some("web".to_owned()));
        assert_eq!(only_name("metadata.name!=web"), None);
        assert_eq!(only_name("metadata.name=web,spec.nodeName=n1"), None);
        assert_eq!(only_name("metadata.name=web,metadata.name=api"), None);
        assert_eq!(only_name("metadata.namespace=web"), None);
        assert_eq!(only_name(""), None);
    }

    #[test]
    fn exact_name_only_for_an_equality_on_the_name() {
        // exact_name finds `metadata.name=` among other terms and ignores `!=`.
        let name =
            |selector: &str| FieldSelector::parse("Pod", selector).unwrap().exact_name().map(str::to_owned);
        assert_eq!(name(""), None);
        assert_eq!(name("metadata.name!=web"), None);
        assert_eq!(name("metadata.namespace=web"), None);
        assert_eq!(name("metadata.namespace=x,metadata.name=web").as_deref(), Some("web"));
        assert_eq!(name("metadata.name!=a,metadata.name=b").as_deref(), Some("b"));
        assert_eq!(name("metadata.name=").as_deref(), Some(""));
        assert!(FieldSelector::parse("Pod", "").unwrap().is_everything());
        assert_eq!(FieldSelector::parse("Pod", ",,").unwrap(), FieldSelector::everything());
        assert_eq!(FieldSelector::everything().to_string(), "");
    }

    #[test]
    fn no_input_panics() {
        // Every string of up to four pieces from an alphabet of the grammar's symbols, words,
        // escapes, NUL and non-ASCII: parsing never panics, a parsed label selector prints
        // back into the same selector, and matching runs.
        const PIECES: [&str; 15] =
            ["a", "b1", "=", "!", "(", ")", ",", " ", "in", "\\", "\0", "é", ">", "<", "/"];
        let object =
            json!({"metadata": {"name": "a", "labels": {"a": "b1", "in": ""}}, "spec": {"nodeName": "a"}});
        const MAX_PIECES: usize = 4;
        let mut text = String::new();
        for length in 0..=MAX_PIECES {
            let mut counters = [0_usize; MAX_PIECES];
            loop {
                text.clear();
                for &piece in &counters[..length] {
                    text.push_str(PIECES[piece]);
                }
                if let Ok(selector) = LabelSelector::parse(&text) {
                    selector.matches_object(&object);
                    assert_eq!(
                        LabelSelector::parse(&selector.to_string()).as_ref(),
                        Ok(&selector),
                        "{text:?}"
                    );
                }
                for kind in ["Pod", "Deployment"] {
                    if let Ok(selector) = FieldSelector::parse(kind, &text) {
                        selector.matches(&object);
                        let _ = selector.exact_name();
                        let _ = selector.to_string();
                    }
                }
                // Next combination, as an odometer over the first `length` counters.
                let Some(position) = counters[..length].iter().rposition(|&piece| piece + 1 < PIECES.len())
                else {
                    break;
                };
                counters[position] += 1;
                counters[position + 1..length].fill(0);
            }
        }
    }
}
