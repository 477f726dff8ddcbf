//! Introspection through the document limits. The standard introspection query (graphql-js's
//! `getIntrospectionQuery()`, what GraphiQL, Apollo, Postman and codegen send) nests `ofType`
//! nine levels below fragment spreads, deeper than `graphql.max_depth` allows ordinary
//! operations. Its answer is bounded by the schema, not by the client, so a document that the
//! limits refuse is run once more against a schema with looser, fixed limits when every
//! operation in it selects only `__schema`, `__type` and `__typename` at its root.
//!
//! Ordinary operations pay nothing for this: the second look happens only after a refusal.

use juniper::{Definition, GraphQLError, OperationType, Selection};

use super::Schema;

/// Deepest nesting an introspection-only document may have. The standard query needs a limit
/// of 18 (fragment spreads count one level each); 32 leaves room for clients that ask a few
/// more `ofType` levels.
pub const INTROSPECTION_MAX_DEPTH: usize = 32;
/// Most fields (fragments expanded) an introspection-only document may select. The full
/// standard query (descriptions, `specifiedByURL`, `isRepeatable`, deprecated input values,
/// `isOneOf`) expands to about 230; each selected field is resolved at most once per element
/// of the schema, so this bounds the work by the schema's size.
pub const INTROSPECTION_MAX_FIELDS: usize = 1_000;

/// The schema introspection-only documents run against: the same types, looser limits.
pub fn introspection_schema() -> Schema {
    Schema::new(
        super::Query,
        super::Mutation,
        juniper::EmptySubscription::new(),
    )
    .limit_depth(INTROSPECTION_MAX_DEPTH)
    .limit_fields(INTROSPECTION_MAX_FIELDS)
}

/// Whether `result` is a refusal by the depth or field limit of a document that only
/// introspects, so it may run against `relaxed`.
pub fn may_retry(
    result: &Result<impl Sized, GraphQLError>,
    source: &str,
    relaxed: &Schema,
) -> bool {
    let refused_by_limits = matches!(
        result,
        Err(GraphQLError::ParseError(error))
            if matches!(
                error.item,
                juniper::ParseError::DepthLimitExceeded(_)
                    | juniper::ParseError::FieldLimitExceeded(_)
            )
    );
    refused_by_limits && is_introspection_only(source, relaxed)
}

/// Every operation is a query whose root selections are introspection fields. Parsed with
/// `relaxed`'s limits, so a document beyond even those is not introspection-only.
pub fn is_introspection_only(source: &str, relaxed: &Schema) -> bool {
    // juniper's own parser (public, though hidden from its docs): the same grammar and limits
    // as the execution that follows.
    let Ok(document) = juniper::parser::parse_document_source(source, &relaxed.schema) else {
        return false;
    };
    let mut operations = 0;
    for definition in &document {
        let Definition::Operation(operation) = definition else {
            continue;
        };
        operations += 1;
        if operation.item.operation_type != OperationType::Query {
            return false;
        }
        let introspects_only = operation.item.selection_set.iter().all(|selection| {
            matches!(
                selection,
                Selection::Field(field)
                    if matches!(field.item.name.item, "__schema" | "__type" | "__typename")
            )
        });
        if !introspects_only {
            return false;
        }
    }
    operations > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_QUERY: &str =
        include_str!("../../tests/fixtures/graphql/introspection-full.graphql");

    fn parses(source: &str, depth: usize, fields: usize) -> bool {
        let schema = introspection_schema()
            .limit_depth(depth)
            .limit_fields(fields);
        juniper::parser::parse_document_source(source, &schema.schema).is_ok()
    }

    /// The smallest limit in 1..=max for which `fits` holds (it holds from there on).
    fn smallest(max: usize, fits: impl Fn(usize) -> bool) -> usize {
        let (mut low, mut high) = (1, max);
        while low < high {
            let middle = (low + high) / 2;
            if fits(middle) {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        low
    }

    #[test]
    fn the_standard_query_exceeds_ordinary_limits_and_fits_its_own_with_room() {
        let depth = smallest(64, |depth| parses(FULL_QUERY, depth, 15_000));
        let fields = smallest(15_000, |fields| parses(FULL_QUERY, 64, fields));
        // Beyond the default `graphql.max_depth` (12); the documented numbers (18, ~230).
        assert_eq!(
            (depth, fields / 10),
            (18, 23),
            "depth {depth}, fields {fields}"
        );
        assert!(depth * 3 / 2 <= INTROSPECTION_MAX_DEPTH);
        assert!(fields * 4 <= INTROSPECTION_MAX_FIELDS);
    }

    #[test]
    fn only_documents_that_introspect_at_their_root_qualify() {
        let schema = introspection_schema();
        for source in [
            "{ __schema { types { name } } }",
            "query Q { __type(name: \"Query\") { fields { name } } __typename }",
            "query A { __schema { queryType { name } } } query B { __typename }",
            "{ __schema { ...S } } fragment S on __Schema { types { name } }",
        ] {
            assert!(is_introspection_only(source, &schema), "{source}");
        }
        for source in [
            "{ __schema { types { name } } services { name } }",
            "{ ... on Query { __schema { types { name } } } }",
            "query A { __typename } query B { me { kind } }",
            "mutation { __typename }",
            "fragment S on __Schema { types { name } }",
            "{ __schema { types { name } ",
        ] {
            assert!(!is_introspection_only(source, &schema), "{source}");
        }
    }
}
