//! A fast path for plain SELECT queries: reads the tokens of one SELECT built only from a
//! small, strict grammar (columns, literals, arithmetic and comparisons, CASE, EXTRACT,
//! SUBSTRING … FROM … FOR, `date '…'`, `interval '…'`, subqueries, joins, WITH, GROUP BY,
//! HAVING, ORDER BY, LIMIT/OFFSET) and records exactly what the walk over `sqlparser`'s AST would
//! record for it, without building the AST.
//!
//! Anything outside that grammar (a quoted identifier, a cast, a window, a set operation,
//! a second statement, a function of concern, a keyword it does not know, nesting deeper
//! than [`MAX_NESTING`], …) makes [`read`] return false, and the statement goes through
//! the parser. The tests check, over the corpus and variants of it (case, comments,
//! whitespace, every statement cut short, every token dropped or doubled, a statement
//! appended), that whenever this path answers, its classification equals the parser's.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::super::Class;
use super::super::findings::Findings;
use super::super::functions;

/// Parentheses, subqueries, function arguments, CASE and NOT nested deeper than this are
/// left to the parser. The parser gives up (a parse error: `unknown`) beyond 50 levels of
/// recursion; one level of nesting here costs it at most about a dozen (a statement, a
/// query, a table factor, and one per rising operator precedence: OR, AND, IS,
/// comparison, LIKE/BETWEEN/IN, + -, * / %, sign), so three stay well below that.
const MAX_NESTING: usize = 3;

/// Keywords the grammar gives a meaning (or that `sqlparser` reads specially where an
/// expression starts): never read as a column name.
const STRUCTURAL: &[Keyword] = &[
    Keyword::SELECT,
    Keyword::FROM,
    Keyword::WHERE,
    Keyword::GROUP,
    Keyword::BY,
    Keyword::HAVING,
    Keyword::ORDER,
    Keyword::LIMIT,
    Keyword::OFFSET,
    Keyword::FETCH,
    Keyword::FOR,
    Keyword::AND,
    Keyword::OR,
    Keyword::NOT,
    Keyword::IN,
    Keyword::IS,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::SIMILAR,
    Keyword::BETWEEN,
    Keyword::AS,
    Keyword::ON,
    Keyword::USING,
    Keyword::JOIN,
    Keyword::INNER,
    Keyword::LEFT,
    Keyword::RIGHT,
    Keyword::FULL,
    Keyword::OUTER,
    Keyword::CROSS,
    Keyword::NATURAL,
    Keyword::LATERAL,
    Keyword::CASE,
    Keyword::WHEN,
    Keyword::THEN,
    Keyword::ELSE,
    Keyword::END,
    Keyword::DISTINCT,
    Keyword::ALL,
    Keyword::WITH,
    Keyword::UNION,
    Keyword::EXCEPT,
    Keyword::INTERSECT,
    Keyword::MINUS,
    Keyword::INTO,
    Keyword::WINDOW,
    Keyword::OVER,
    Keyword::FILTER,
    Keyword::WITHIN,
    Keyword::QUALIFY,
    Keyword::ASC,
    Keyword::DESC,
    Keyword::NULLS,
    Keyword::COLLATE,
    Keyword::ESCAPE,
    Keyword::ANY,
    Keyword::SOME,
    Keyword::VALUES,
    Keyword::TABLE,
    Keyword::ONLY,
    Keyword::TABLESAMPLE,
    Keyword::UNNEST,
    Keyword::JSON_TABLE,
    Keyword::OPENJSON,
    Keyword::XMLTABLE,
    Keyword::SEMANTIC_VIEW,
    Keyword::PIVOT,
    Keyword::UNPIVOT,
    Keyword::PARTITION,
    Keyword::ORDINALITY,
    // Prefixes `sqlparser` parses as special expressions (`parse_expr_prefix_by_reserved_word`).
    Keyword::TRUE,
    Keyword::FALSE,
    Keyword::NULL,
    Keyword::CURRENT_CATALOG,
    Keyword::CURRENT_USER,
    Keyword::SESSION_USER,
    Keyword::USER,
    Keyword::CURRENT_TIMESTAMP,
    Keyword::CURRENT_TIME,
    Keyword::CURRENT_DATE,
    Keyword::LOCALTIME,
    Keyword::LOCALTIMESTAMP,
    Keyword::CONVERT,
    Keyword::TRY_CONVERT,
    Keyword::CAST,
    Keyword::TRY_CAST,
    Keyword::SAFE_CAST,
    Keyword::EXISTS,
    Keyword::EXTRACT,
    Keyword::CEIL,
    Keyword::FLOOR,
    Keyword::POSITION,
    Keyword::SUBSTR,
    Keyword::SUBSTRING,
    Keyword::OVERLAY,
    Keyword::TRIM,
    Keyword::INTERVAL,
    Keyword::ARRAY,
    Keyword::MATCH,
    Keyword::STRUCT,
    Keyword::PRIOR,
    Keyword::MAP,
    Keyword::LAMBDA,
    Keyword::CIRCLE,
    Keyword::BOX,
    Keyword::PATH,
    Keyword::LINE,
    Keyword::LSEG,
    Keyword::POINT,
    Keyword::POLYGON,
    Keyword::DATE,
];

/// Keywords that are aggregate functions with nothing special about their arguments.
const AGGREGATES: &[Keyword] = &[
    Keyword::SUM,
    Keyword::AVG,
    Keyword::COUNT,
    Keyword::MIN,
    Keyword::MAX,
];

/// EXTRACT fields accepted.
const FIELDS: &[Keyword] = &[Keyword::YEAR, Keyword::MONTH, Keyword::DAY];

/// Classifies `tokens` into `acc` (which must be fresh) when they are one plain SELECT the
/// fast path reads; returns false, leaving `acc` untouched, otherwise.
pub(super) fn read(tokens: &[TokenWithSpan], acc: &mut Findings) -> bool {
    let mut significant = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .peekable();
    let starts_query = matches!(
        significant.peek(),
        Some(Token::Word(w)) if w.quote_style.is_none()
            && matches!(w.keyword, Keyword::SELECT | Keyword::WITH)
    );
    if !starts_query {
        return false;
    }
    let significant: Vec<&Token> = significant.collect();
    let mut reader = Reader {
        tokens: &significant,
        at: 0,
        nesting: 0,
        found: Findings::new(),
    };
    if reader.statement().is_none() {
        return false;
    }
    *acc = reader.found;
    true
}

/// `None`: outside the grammar.
type Read<T = ()> = Option<T>;

struct Reader<'a> {
    tokens: &'a [&'a Token],
    at: usize,
    nesting: usize,
    found: Findings,
}

impl Reader<'_> {
    fn peek(&self) -> &Token {
        self.peek_nth(0)
    }

    fn peek_nth(&self, n: usize) -> &Token {
        self.tokens.get(self.at + n).copied().unwrap_or(&Token::EOF)
    }

    fn next(&mut self) -> &Token {
        let token = self.tokens.get(self.at).copied().unwrap_or(&Token::EOF);
        self.at += 1;
        token
    }

    fn eat(&mut self, token: &Token) -> bool {
        let found = self.peek() == token;
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, token: &Token) -> Read {
        self.eat(token).then_some(())
    }

    fn keyword_at(&self, n: usize) -> Option<Keyword> {
        match self.peek_nth(n) {
            Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
            _ => None,
        }
    }

    fn is_keyword(&self, keyword: Keyword) -> bool {
        self.keyword_at(0) == Some(keyword)
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        let found = self.is_keyword(keyword);
        self.at += usize::from(found);
        found
    }

    fn expect_keyword(&mut self, keyword: Keyword) -> Read {
        self.eat_keyword(keyword).then_some(())
    }

    fn nest<T>(&mut self, f: impl FnOnce(&mut Self) -> Read<T>) -> Read<T> {
        if self.nesting >= MAX_NESTING {
            return None;
        }
        self.nesting += 1;
        let result = f(self);
        self.nesting -= 1;
        result
    }

    /// A name that is not a keyword: a column, table or alias.
    fn plain_name(&mut self) -> Read<String> {
        let name = plain(self.peek())?;
        self.at += 1;
        Some(name)
    }

    /// A table or schema name: an unquoted word the grammar gives no meaning.
    fn name(&mut self) -> Read<String> {
        let name = plain_or_keyword(self.peek())?;
        self.at += 1;
        Some(name)
    }

    /// The whole input: one query, an optional semicolon, nothing else.
    fn statement(&mut self) -> Read {
        self.found.statements += 1;
        self.found.add(Class::Read, "SELECT");
        self.query(true)?;
        self.eat(&Token::SemiColon);
        (self.peek() == &Token::EOF).then_some(())
    }

    /// `[WITH name AS (query), …] select [ORDER BY …] [LIMIT n [OFFSET n]]`.
    fn query(&mut self, top: bool) -> Read {
        if self.eat_keyword(Keyword::WITH) {
            if !top {
                return None;
            }
            loop {
                let name = self.plain_name()?;
                if !self.found.ctes.contains(&name) {
                    self.found.ctes.push(name);
                }
                self.expect_keyword(Keyword::AS)?;
                self.expect(&Token::LParen)?;
                self.nest(|r| r.query(false))?;
                self.expect(&Token::RParen)?;
                if !self.eat(&Token::Comma) {
                    break;
                }
            }
        }
        let has_where = self.select()?;
        if self.eat_keyword(Keyword::ORDER) {
            self.expect_keyword(Keyword::BY)?;
            loop {
                self.expr()?;
                let _ = self.eat_keyword(Keyword::ASC) || self.eat_keyword(Keyword::DESC);
                if self.eat_keyword(Keyword::NULLS) {
                    let _ = self.eat_keyword(Keyword::FIRST) || self.eat_keyword(Keyword::LAST);
                }
                if !self.eat(&Token::Comma) {
                    break;
                }
            }
        }
        let limited = self.eat_keyword(Keyword::LIMIT);
        if limited {
            let Token::Number(..) = self.next() else {
                return None;
            };
            if self.eat_keyword(Keyword::OFFSET) {
                let Token::Number(..) = self.next() else {
                    return None;
                };
            }
        }
        if top {
            self.found.selects += 1;
            self.found.selects_with_where += u32::from(has_where);
            self.found.limitable += 1;
            self.found.limited += u32::from(limited);
        }
        Some(())
    }

    /// `SELECT [DISTINCT] items [FROM …] [WHERE …] [GROUP BY …] [HAVING …]`; whether it
    /// has a WHERE.
    fn select(&mut self) -> Read<bool> {
        self.expect_keyword(Keyword::SELECT)?;
        let _ = self.eat_keyword(Keyword::DISTINCT) || self.eat_keyword(Keyword::ALL);
        if self.is_keyword(Keyword::ON) {
            return None;
        }
        // The walk records `*` for a wildcard before the select's expressions.
        let star_at = self.found.columns.len();
        let mut wildcard = false;
        loop {
            if self.eat(&Token::Mul) {
                wildcard = true;
            } else {
                self.expr()?;
                if self.eat_keyword(Keyword::AS) {
                    alias_after_as(self.next())?;
                } else if plain(self.peek()).is_some() {
                    self.at += 1;
                }
            }
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        if wildcard && !self.found.columns.iter().any(|c| c == "*") {
            self.found.columns.insert(star_at, "*".to_string());
        }
        if self.eat_keyword(Keyword::FROM) {
            loop {
                self.table_with_joins()?;
                if !self.eat(&Token::Comma) {
                    break;
                }
            }
        }
        let has_where = self.eat_keyword(Keyword::WHERE);
        if has_where {
            self.expr()?;
        }
        if self.eat_keyword(Keyword::GROUP) {
            self.expect_keyword(Keyword::BY)?;
            self.exprs()?;
        }
        if self.eat_keyword(Keyword::HAVING) {
            self.expr()?;
        }
        Some(has_where)
    }

    fn table_with_joins(&mut self) -> Read {
        self.table_factor()?;
        loop {
            let cross = self.is_keyword(Keyword::CROSS);
            let words = match (self.keyword_at(0), self.keyword_at(1)) {
                (Some(Keyword::JOIN), _) => 1,
                (Some(Keyword::INNER | Keyword::CROSS), Some(Keyword::JOIN)) => 2,
                (Some(Keyword::LEFT | Keyword::RIGHT | Keyword::FULL), Some(Keyword::JOIN)) => 2,
                (Some(Keyword::LEFT | Keyword::RIGHT | Keyword::FULL), Some(Keyword::OUTER))
                    if self.keyword_at(2) == Some(Keyword::JOIN) =>
                {
                    3
                }
                _ => return Some(()),
            };
            self.at += words;
            self.table_factor()?;
            if !cross {
                self.expect_keyword(Keyword::ON)?;
                self.expr()?;
            }
        }
    }

    /// `name [[AS] alias]` or `(query) [AS] alias [(columns)]`.
    fn table_factor(&mut self) -> Read {
        if self.eat(&Token::LParen) {
            if !self.is_keyword(Keyword::SELECT) && !self.is_keyword(Keyword::WITH) {
                return None;
            }
            self.nest(|r| r.query(false))?;
            self.expect(&Token::RParen)?;
            if self.eat_keyword(Keyword::AS) {
                alias_after_as(self.next())?;
            } else if plain(self.peek()).is_some() {
                self.at += 1;
            }
            if self.eat(&Token::LParen) {
                loop {
                    self.plain_name()?;
                    if !self.eat(&Token::Comma) {
                        break;
                    }
                }
                self.expect(&Token::RParen)?;
            }
            return Some(());
        }
        let first = self.name()?;
        let (schema, table) = if self.eat(&Token::Period) {
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        if matches!(self.peek(), Token::LParen | Token::Period) {
            return None;
        }
        self.found.table_name(schema, table);
        if self.eat_keyword(Keyword::AS) {
            alias_after_as(self.next())?;
        } else if plain(self.peek()).is_some() {
            self.at += 1;
        }
        if self.peek() == &Token::LParen {
            return None;
        }
        Some(())
    }

    fn exprs(&mut self) -> Read {
        loop {
            self.expr()?;
            if !self.eat(&Token::Comma) {
                return Some(());
            }
        }
    }

    /// An expression: operands joined by binary operators, with `[NOT] BETWEEN … AND …`,
    /// `[NOT] IN (…)`, `[NOT] LIKE …` and `IS [NOT] NULL` after an operand.
    fn expr(&mut self) -> Read {
        loop {
            self.operand()?;
            loop {
                let negated = self.is_keyword(Keyword::NOT)
                    && matches!(
                        self.keyword_at(1),
                        Some(Keyword::BETWEEN | Keyword::IN | Keyword::LIKE | Keyword::ILIKE)
                    );
                self.at += usize::from(negated);
                if self.eat_keyword(Keyword::BETWEEN) {
                    self.arithmetic()?;
                    self.expect_keyword(Keyword::AND)?;
                    self.arithmetic()?;
                } else if self.eat_keyword(Keyword::IN) {
                    self.expect(&Token::LParen)?;
                    self.nest(|r| {
                        if r.is_keyword(Keyword::SELECT) {
                            r.query(false)
                        } else {
                            r.exprs()
                        }
                    })?;
                    self.expect(&Token::RParen)?;
                } else if self.eat_keyword(Keyword::LIKE) || self.eat_keyword(Keyword::ILIKE) {
                    self.operand()?;
                } else if negated {
                    return None;
                } else if self.eat_keyword(Keyword::IS) {
                    self.eat_keyword(Keyword::NOT);
                    self.expect_keyword(Keyword::NULL)?;
                } else {
                    break;
                }
            }
            if !self.binary_operator() {
                return Some(());
            }
        }
    }

    /// Operands joined by arithmetic operators (the bounds of BETWEEN).
    fn arithmetic(&mut self) -> Read {
        loop {
            self.operand()?;
            match self.peek() {
                Token::Plus | Token::Minus | Token::Mul | Token::Div | Token::Mod => self.at += 1,
                _ => return Some(()),
            }
        }
    }

    fn binary_operator(&mut self) -> bool {
        let found = matches!(
            self.peek(),
            Token::Plus
                | Token::Minus
                | Token::Mul
                | Token::Div
                | Token::Mod
                | Token::Eq
                | Token::Neq
                | Token::Lt
                | Token::Gt
                | Token::LtEq
                | Token::GtEq
        ) || self.is_keyword(Keyword::AND)
            || self.is_keyword(Keyword::OR);
        self.at += usize::from(found);
        found
    }

    /// `[-|+|NOT] primary` (one sign: each costs the parser a level of recursion).
    fn operand(&mut self) -> Read {
        if matches!(self.peek(), Token::Minus | Token::Plus) {
            self.at += 1;
        }
        if self.eat_keyword(Keyword::NOT) {
            return self.nest(Self::operand);
        }
        self.primary()
    }

    fn primary(&mut self) -> Read {
        match self.peek() {
            Token::Number(..) | Token::SingleQuotedString(_) | Token::Placeholder(_) => {
                self.at += 1;
                return Some(());
            }
            Token::LParen => {
                self.at += 1;
                self.nest(|r| {
                    if r.is_keyword(Keyword::SELECT) {
                        r.query(false)
                    } else {
                        r.expr()
                    }
                })?;
                return self.expect(&Token::RParen);
            }
            Token::Word(w) if w.quote_style.is_none() => {}
            _ => return None,
        }
        match self.keyword_at(0) {
            Some(Keyword::EXISTS) => {
                self.at += 1;
                self.expect(&Token::LParen)?;
                self.nest(|r| r.query(false))?;
                self.expect(&Token::RParen)
            }
            Some(Keyword::CASE) => {
                self.at += 1;
                self.nest(Self::case)
            }
            Some(Keyword::DATE) => {
                self.at += 1;
                match self.next() {
                    Token::SingleQuotedString(_) => Some(()),
                    _ => None,
                }
            }
            Some(Keyword::INTERVAL) => {
                self.at += 1;
                let Token::SingleQuotedString(_) = self.next() else {
                    return None;
                };
                // A unit after the string (`interval '3' month`) is left to the parser.
                match self.keyword_at(0) {
                    None => Some(()),
                    Some(k) if STRUCTURAL.contains(&k) => Some(()),
                    Some(_) => None,
                }
            }
            Some(Keyword::EXTRACT) => {
                self.at += 1;
                self.expect(&Token::LParen)?;
                if !self.keyword_at(0).is_some_and(|k| FIELDS.contains(&k)) {
                    return None;
                }
                self.at += 1;
                self.expect_keyword(Keyword::FROM)?;
                self.nest(Self::expr)?;
                self.expect(&Token::RParen)
            }
            Some(Keyword::SUBSTRING) => {
                self.at += 1;
                self.expect(&Token::LParen)?;
                self.nest(|r| {
                    r.expr()?;
                    r.expect_keyword(Keyword::FROM)?;
                    r.expr()?;
                    if r.eat_keyword(Keyword::FOR) {
                        r.expr()?;
                    }
                    Some(())
                })?;
                self.expect(&Token::RParen)
            }
            Some(k) if self.peek_nth(1) == &Token::LParen => {
                if k != Keyword::NoKeyword && !AGGREGATES.contains(&k) {
                    return None;
                }
                self.function()
            }
            Some(k) if STRUCTURAL.contains(&k) => None,
            Some(_) => self.column(),
            None => None,
        }
    }

    /// `name(…)`, after its schema, if any.
    fn function(&mut self) -> Read {
        let Token::Word(w) = self.next() else {
            return None;
        };
        let name = w.value.to_lowercase();
        if functions::concern(&name).is_some() {
            return None;
        }
        if !self.found.functions.contains(&name) {
            self.found.functions.push(name);
        }
        self.expect(&Token::LParen)?;
        if self.eat(&Token::Mul) {
            return self.expect(&Token::RParen);
        }
        if self.eat(&Token::RParen) {
            return Some(());
        }
        self.eat_keyword(Keyword::DISTINCT);
        self.nest(Self::exprs)?;
        self.expect(&Token::RParen)
    }

    /// `column`, `table.column`, `schema.function(…)`.
    fn column(&mut self) -> Read {
        if self.peek_nth(1) == &Token::Period {
            plain_or_keyword(self.peek())?;
            if let Token::Word(next) = self.peek_nth(2)
                && next.quote_style.is_none()
                && self.peek_nth(3) == &Token::LParen
            {
                if next.keyword != Keyword::NoKeyword && !AGGREGATES.contains(&next.keyword) {
                    return None;
                }
                self.at += 2;
                return self.function();
            }
            self.at += 2;
        }
        let name = plain_or_keyword(self.peek())?;
        self.at += 1;
        if matches!(
            self.peek(),
            Token::Period | Token::LParen | Token::SingleQuotedString(_)
        ) {
            return None;
        }
        if !self.found.columns.contains(&name) {
            self.found.columns.push(name);
        }
        Some(())
    }

    /// `CASE [operand] WHEN … THEN … [ELSE …] END`, after `CASE`.
    fn case(&mut self) -> Read {
        if !self.is_keyword(Keyword::WHEN) {
            self.expr()?;
        }
        self.expect_keyword(Keyword::WHEN)?;
        loop {
            self.expr()?;
            self.expect_keyword(Keyword::THEN)?;
            self.expr()?;
            if !self.eat_keyword(Keyword::WHEN) {
                break;
            }
        }
        if self.eat_keyword(Keyword::ELSE) {
            self.expr()?;
        }
        self.expect_keyword(Keyword::END)
    }
}

/// The lower-case name of an unquoted word that is no keyword.
fn plain(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::NoKeyword => {
            Some(w.value.to_lowercase())
        }
        _ => None,
    }
}

/// The lower-case name of an unquoted word that is no keyword the grammar gives a meaning.
fn plain_or_keyword(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_none() && !STRUCTURAL.contains(&w.keyword) => {
            Some(w.value.to_lowercase())
        }
        _ => None,
    }
}

/// The alias after `AS`: any unquoted word the grammar gives no meaning.
fn alias_after_as(token: &Token) -> Read {
    plain_or_keyword(token).map(drop)
}

#[cfg(test)]
mod tests;
