//! A test fixture: exports functions named like the projection world's, but imports
//! `acme:fixture/vault`, which the host does not provide. Uploads of it must be refused with
//! `unsupported_import`.

#![allow(missing_docs)] // generated bindings

wit_bindgen::generate!({
    inline: "
        package acme:fixture;

        /// Something a plugin must not reach: secrets.
        interface vault {
            /// A secret.
            get: func(key: string) -> string;
        }

        world extra-import {
            import vault;
            export describe: func() -> string;
            export handle: func() -> string;
        }
    ",
    world: "extra-import",
});

struct Fixture;

impl Guest for Fixture {
    fn describe() -> String {
        acme::fixture::vault::get("describe")
    }

    fn handle() -> String {
        acme::fixture::vault::get("handle")
    }
}

export!(Fixture);
