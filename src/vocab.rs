//! Vocabularies stored as text, declared as enums by one macro usable from any module.
//!
//! `text_enum!(pub(crate) Name { Variant => "text", … })` is closed: the service wrote every value, so
//! unknown text read back is a bug and `parse` answers `None`. `text_enum!(pub(crate) open Name { … })` is
//! for vocabularies someone else grows (Stripe's statuses): it adds `Other(String)`, `parse`
//! never fails, and unknown text round-trips through `Other` unchanged.

/// Declares a text-stored enum with `ALL` (the known values), `as_str`, `parse` and `Display`.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis open $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
            /// Text this build does not know, kept as it came. `parse` never puts known text here.
            Other(String),
        }

        #[allow(dead_code, reason = "every vocabulary gets the whole API; not each uses all of it")]
        impl $name {
            /// Every known value (`Other` aside).
            $vis const ALL: &'static [$name] = &[$($name::$variant),+];

            $vis fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(raw) => raw,
                }
            }

            /// Reads the text; unknown text is kept as `Other`.
            $vis fn parse(raw: &str) -> Self {
                match raw {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        #[allow(dead_code, reason = "every vocabulary gets the whole API; not each uses all of it")]
        impl $name {
            /// Every value, in declaration order.
            $vis const ALL: &'static [$name] = &[$($name::$variant),+];

            $vis fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Reads the stored text; unknown text is a bug, reported by the caller.
            $vis fn parse(raw: &str) -> Option<Self> {
                match raw {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    text_enum!(
        pub(crate) Closed {
            One => "one",
            /// Documented variants keep their docs.
            Two => "two",
        }
    );

    text_enum!(
        pub(crate) open Open {
            One => "one",
            Two => "two",
        }
    );

    #[test]
    fn closed_values_round_trip_and_unknown_text_is_refused() {
        for value in Closed::ALL {
            assert_eq!(Closed::parse(value.as_str()), Some(*value));
            assert_eq!(value.to_string(), value.as_str());
        }
        assert_eq!(Closed::parse("three"), None);
    }

    #[test]
    fn open_values_round_trip_and_unknown_text_is_kept() {
        for value in Open::ALL {
            assert_eq!(&Open::parse(value.as_str()), value);
        }
        let unknown = Open::parse("three");
        assert_eq!(unknown, Open::Other("three".into()));
        assert_eq!(unknown.as_str(), "three");
        assert_eq!(Open::parse(unknown.as_str()), unknown);
        assert_eq!(unknown.to_string(), "three");
    }
}
