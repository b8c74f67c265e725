//! Flink's temporal join syntax, `JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON …`: the table
//! read as versions by event time. sqlparser's generic dialect has no table versions, so the
//! clause is taken out of the token stream before parsing (tokens keep their places in the
//! text, so errors still point at the right line and column) and the table is renamed to a
//! table of its own, `__versioned_<n>`, that the translation knows as a versioned table.

use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::keywords::Keyword;
use datafusion_sql::sqlparser::parser::ParserError;
use datafusion_sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

/// Names of the tables a versioned table is renamed to: `__versioned_<n>`.
pub(crate) const VERSIONED_TABLE_PREFIX: &str = "__versioned_";

/// One `<table> FOR SYSTEM_TIME AS OF <column>` of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionedCall {
    /// The table (a source or view) read as versions.
    pub table: String,
    /// The column of the other side whose time picks the version, as written.
    pub as_of: String,
}

fn is_keyword(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.keyword == k)
}

/// The tokens of `sql` with every `FOR SYSTEM_TIME AS OF <column>` removed and its table
/// renamed to `__versioned_<first + i>` (aliased by its own name when it had no alias), and the
/// clauses found.
pub(crate) fn rewrite(
    sql: &str,
    first: usize,
) -> Result<(Vec<TokenWithSpan>, Vec<VersionedCall>), ParserError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i].token, Token::Whitespace(_)))
        .collect();
    let at = |k: usize| significant.get(k).map(|i| &tokens[*i].token);
    let mut remove = vec![false; tokens.len()];
    let mut rename: Vec<(usize, String, bool)> = Vec::new();
    let mut calls = Vec::new();
    for k in 1..significant.len() {
        let words = [Keyword::FOR, Keyword::SYSTEM_TIME, Keyword::AS, Keyword::OF];
        if !words
            .iter()
            .enumerate()
            .all(|(j, w)| at(k + j).is_some_and(|t| is_keyword(t, *w)))
        {
            continue;
        }
        let Some(Token::Word(table)) = at(k - 1) else {
            continue;
        };
        // The column: `a` or `a.b`.
        let mut end = k + 4;
        let mut as_of = match at(end) {
            Some(Token::Word(w)) => w.value.clone(),
            _ => {
                return Err(ParserError::ParserError(
                    "FOR SYSTEM_TIME AS OF names the event-time column of the other side, e.g. FOR SYSTEM_TIME AS OF o.ts"
                        .into(),
                ));
            }
        };
        if matches!(at(end + 1), Some(Token::Period))
            && let Some(Token::Word(w)) = at(end + 2)
        {
            as_of = format!("{as_of}.{}", w.value);
            end += 2;
        }
        let aliased = match at(end + 1) {
            Some(Token::Word(w)) => w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword,
            _ => false,
        };
        let (from, to) = (significant[k], significant[end]);
        remove[from..=to].iter_mut().for_each(|r| *r = true);
        rename.push((significant[k - 1], table.value.clone(), aliased));
        calls.push(VersionedCall {
            table: table.value.clone(),
            as_of,
        });
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut n = first;
    for (i, t) in tokens.into_iter().enumerate() {
        if remove[i] {
            continue;
        }
        match rename.iter().find(|(r, _, _)| *r == i) {
            Some((_, table, aliased)) => {
                let span = t.span;
                let name = format!("{VERSIONED_TABLE_PREFIX}{n}");
                n += 1;
                out.push(TokenWithSpan::new(
                    Token::Word(Word {
                        value: name,
                        quote_style: None,
                        keyword: Keyword::NoKeyword,
                    }),
                    span,
                ));
                if !aliased {
                    // Columns stay qualified by the table's own name.
                    for token in [
                        Token::Whitespace(datafusion_sql::sqlparser::tokenizer::Whitespace::Space),
                        Token::make_keyword("AS"),
                        Token::Whitespace(datafusion_sql::sqlparser::tokenizer::Whitespace::Space),
                        Token::make_word(table, None),
                    ] {
                        out.push(TokenWithSpan::new(token, span));
                    }
                }
            }
            None => out.push(t),
        }
    }
    Ok((out, calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(tokens: &[TokenWithSpan]) -> String {
        tokens.iter().map(|t| t.token.to_string()).collect()
    }

    #[test]
    fn the_clause_is_removed_and_the_table_renamed() {
        let (tokens, calls) = rewrite(
            "SELECT * FROM o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.c = r.c",
            3,
        )
        .unwrap();
        assert_eq!(
            text(&tokens),
            "SELECT * FROM o JOIN __versioned_3  AS r ON o.c = r.c"
        );
        assert_eq!(
            calls,
            [VersionedCall {
                table: "rates".into(),
                as_of: "o.ts".into()
            }]
        );
        let (tokens, _) = rewrite(
            "SELECT 1 FROM o JOIN rates FOR SYSTEM_TIME AS OF ts ON o.c = rates.c",
            0,
        )
        .unwrap();
        assert!(
            text(&tokens).contains("__versioned_0 AS rates "),
            "{}",
            text(&tokens)
        );
        assert!(rewrite("SELECT 1 FROM a JOIN b FOR SYSTEM_TIME AS OF 5", 0).is_err());
    }
}
