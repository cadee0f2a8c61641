//! Service code, generated from the model with `quote` and formatted with prettyplease.
//!
//! For a service `ChatService` of package `chat.v1`, in the package's module:
//!
//! - `mod chat_service`: the service's `NAME` and one constant per method (`LOGIN: RpcMethod`,
//!   `TYPING: EventMethod`, `VIDEO_FEED: StreamMethod`) with its fully-qualified name and the
//!   schema's options: what the client and server below are built on, and what applications and
//!   middleware can refer to;
//! - `trait ChatService` (`#[async_trait]`): one method per rpc, event and stream, and for each
//!   stream two hooks with empty defaults (`on_video_feed_open`, `on_video_feed_end`);
//! - `struct ChatServiceServer<T>`: registers an implementation in a `Router`;
//! - `struct ChatServiceClient`: calls the service on the peer of a `Session`.
//!
//! Generated code names the runtime by absolute paths (`::echostream_runtime::Session`) and std
//! items too (`::core::result::Result`), so that schema types named `Session` or `Result` never
//! shadow them.

use echostream_idl::model::{Delivery, Method, MethodKind, Service, StreamOptions};
use echostream_idl::naming;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

use crate::docs;
use crate::names;

/// What to generate for one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sides {
    /// The trait and the server wrapper.
    pub server: bool,
    /// The client.
    pub client: bool,
}

/// The Rust names generated for one service (also used to find clashes).
pub struct ServiceNames {
    /// The trait: `ChatService`.
    pub service: String,
    /// `ChatServiceServer`.
    pub server: String,
    /// `ChatServiceClient`.
    pub client: String,
    /// The module of method constants: `chat_service`.
    pub module: String,
}

impl ServiceNames {
    /// The names generated for `service`.
    pub fn of(service: &Service) -> ServiceNames {
        let camel = naming::rust_camel(&service.name);
        ServiceNames {
            service: names::sanitize(&camel),
            server: names::sanitize(&format!("{camel}Server")),
            client: names::sanitize(&format!("{camel}Client")),
            module: names::snake(&service.name),
        }
    }
}

/// The Rust names generated for one method.
pub struct MethodNames {
    /// The trait and client method: `login`.
    pub method: String,
    /// The client method with options: `login_with`.
    pub with: String,
    /// The constant: `LOGIN`.
    pub constant: String,
    /// For streams, the trait's hooks: `on_video_feed_open`, `on_video_feed_end`.
    pub hooks: Option<(String, String)>,
}

impl MethodNames {
    /// The names generated for `method`.
    pub fn of(method: &Method) -> MethodNames {
        let base = naming::rust_snake(&method.name);
        MethodNames {
            method: names::sanitize(&base),
            with: names::sanitize(&format!("{base}_with")),
            constant: names::screaming(&method.name),
            hooks: matches!(method.kind, MethodKind::Stream { .. }).then(|| {
                (
                    names::sanitize(&format!("on_{base}_open")),
                    names::sanitize(&format!("on_{base}_end")),
                )
            }),
        }
    }
}

/// The names the client has besides its methods.
pub const CLIENT_RESERVED: [&str; 2] = ["new", "session"];

/// The constant of the service's name in its constants module.
pub const NAME_CONSTANT: &str = "NAME";

/// The code of `service`, of package `package`, with its `sides`.
pub fn generate(package: &str, service: &Service, sides: Sides) -> TokenStream {
    ServiceGen::new(package, service, sides).generate()
}

/// Generates the code of one service.
struct ServiceGen<'a> {
    package: &'a str,
    service: &'a Service,
    sides: Sides,
    names: ServiceNames,
}

/// The runtime crate, by absolute path.
fn rt() -> TokenStream {
    quote!(::echostream_runtime)
}

impl<'a> ServiceGen<'a> {
    fn new(package: &'a str, service: &'a Service, sides: Sides) -> Self {
        ServiceGen {
            package,
            service,
            sides,
            names: ServiceNames::of(service),
        }
    }

    fn generate(&self) -> TokenStream {
        let mut out = self.constants();
        if self.sides.server {
            out.extend(self.handler_trait());
            out.extend(self.server());
        }
        if self.sides.client {
            out.extend(self.client());
        }
        out
    }

    /// The path of a message type from the package module.
    fn ty(&self, full_name: &str) -> TokenStream {
        let path = names::type_path(self.package, full_name);
        syn::parse_str::<syn::Path>(&path)
            .map(|p| quote!(#p))
            .unwrap_or_else(|e| panic!("generated type path `{path}` does not parse: {e}"))
    }

    fn module(&self) -> Ident {
        ident(&self.names.module)
    }

    fn full_name(&self, method: &Method) -> String {
        format!("{}/{}", self.service.full_name, method.name)
    }

    /// `mod chat_service { pub const NAME; pub const LOGIN: RpcMethod = ...; }`
    fn constants(&self) -> TokenStream {
        let rt = rt();
        let module = self.module();
        let service_name = &self.service.full_name;
        let module_doc = Doc::default()
            .para(format!(
                "Names and options of the methods of service `{service_name}`, as the schema \
                 declares them: what its client and server are built on, for applications and \
                 middleware to refer to."
            ))
            .attrs();
        let name_doc = Doc::default()
            .para(format!(
                "The service's fully-qualified name, `{service_name}`."
            ))
            .attrs();
        let name_ident = ident(NAME_CONSTANT);
        let mut uses = Vec::new();
        let kinds = |f: fn(&MethodKind) -> bool| self.service.methods.iter().any(|m| f(&m.kind));
        if kinds(|k| matches!(k, MethodKind::Rpc { .. })) {
            uses.push(quote!(RpcMethod));
        }
        if kinds(|k| matches!(k, MethodKind::Event)) {
            uses.push(quote!(EventMethod));
        }
        if kinds(|k| matches!(k, MethodKind::Stream { .. })) {
            uses.push(quote!(StreamMethod));
        }
        let imports = (!uses.is_empty()).then(|| quote!(use #rt::typed::{#(#uses),*};));
        let datagram = kinds(|k| {
            matches!(k, MethodKind::Stream { options } if options.delivery == Delivery::Datagram)
        })
        .then(|| quote!(use #rt::Delivery;));
        let constants = self.service.methods.iter().map(|method| {
            let names = MethodNames::of(method);
            let constant = ident(&names.constant);
            let full_name = self.full_name(method);
            let doc = Doc::default()
                .para(format!("`{}`", declaration(method)))
                .attrs();
            let deprecated = method.deprecated.then(|| quote!(.with_deprecated(true)));
            let value = match &method.kind {
                MethodKind::Rpc { options, .. } => {
                    let timeout = options.timeout_ms.map(|ms| {
                        let ms = Literal::u64_unsuffixed(ms);
                        quote!(.with_timeout_ms(#ms))
                    });
                    let idempotent = options.idempotent.then(|| quote!(.with_idempotent(true)));
                    quote! {
                        pub const #constant: RpcMethod =
                            RpcMethod::new(#full_name) #timeout #idempotent #deprecated;
                    }
                }
                MethodKind::Event => quote! {
                    pub const #constant: EventMethod = EventMethod::new(#full_name) #deprecated;
                },
                MethodKind::Stream { options } => {
                    let delivery = (options.delivery == Delivery::Datagram)
                        .then(|| quote!(.with_delivery(Delivery::Datagram)));
                    let jitter = (options.jitter_ms != 0).then(|| {
                        let ms = Literal::u32_unsuffixed(options.jitter_ms);
                        quote!(.with_jitter_ms(#ms))
                    });
                    let max_frame = (options.max_frame_bytes
                        != StreamOptions::DEFAULT_MAX_FRAME_BYTES)
                        .then(|| {
                            let bytes = Literal::u32_unsuffixed(options.max_frame_bytes);
                            quote!(.with_max_frame_bytes(#bytes))
                        });
                    quote! {
                        pub const #constant: StreamMethod = StreamMethod::new(#full_name)
                            #delivery #jitter #max_frame #deprecated;
                    }
                }
            };
            quote! {
                #doc
                #value
            }
        });
        // A service named like its package (`chat.Chat`) has a module named like the package's.
        let inception = names::package_module(self.package)
            .last()
            .is_some_and(|last| *last == self.names.module)
            .then(|| quote!(#[allow(clippy::module_inception)]));
        quote! {
            #module_doc
            #inception
            pub mod #module {
                #imports
                #datagram

                #name_doc
                pub const #name_ident: &str = #service_name;
                #(#constants)*
            }
        }
    }

    /// The start of the service's docs: its schema doc, or a generated line.
    fn summary(&self) -> Doc {
        Doc::default().schema_or(
            &self.service.doc,
            format!("Schema service `{}`.", self.service.full_name),
        )
    }

    /// `#[async_trait] pub trait ChatService { ... }`
    fn handler_trait(&self) -> TokenStream {
        let rt = rt();
        let trait_name = ident(&self.names.service);
        let usage = if self.sides.client {
            format!(
                "Implement it to serve the service, and register the implementation with \
                 [`{}`]; call the service on a peer with [`{}`]. Either side of a connection \
                 may serve it.",
                self.names.server, self.names.client
            )
        } else {
            format!(
                "Implement it to serve the service, and register the implementation with \
                 [`{}`]. Either side of a connection may serve it.",
                self.names.server
            )
        };
        let doc = self.summary().para(usage).attrs();
        let methods = self.service.methods.iter().map(|method| {
            let names = MethodNames::of(method);
            let name = ident(&names.method);
            let input = self.ty(&method.input);
            let deprecated = method_attrs(method, &names);
            let decl = declaration(method);
            let schema_doc = Doc::default().schema(&method.doc);
            match &method.kind {
                MethodKind::Rpc { output, .. } => {
                    let output = self.ty(output);
                    let doc = schema_doc
                        .para(format!(
                            "Answers each call of `{decl}`; an error status is the caller's \
                             error."
                        ))
                        .attrs();
                    quote! {
                        #doc
                        #deprecated
                        async fn #name(
                            &self,
                            session: &#rt::Session,
                            request: #input,
                        ) -> ::core::result::Result<#output, #rt::Status>;
                    }
                }
                MethodKind::Event => {
                    let doc = schema_doc
                        .para(format!(
                            "Handles each `{decl}` from a peer; the events of a session are \
                             handled one at a time, in the order the peer emitted them."
                        ))
                        .attrs();
                    quote! {
                        #doc
                        #deprecated
                        async fn #name(&self, session: &#rt::Session, event: #input);
                    }
                }
                MethodKind::Stream { options } => {
                    let playout = if options.jitter_ms == 0 {
                        "as they arrive".to_string()
                    } else {
                        format!(
                            "in sequence order through a jitter buffer of {} ms",
                            options.jitter_ms
                        )
                    };
                    let doc = schema_doc
                        .para(format!(
                            "Handles each frame of a `{decl}` a peer opened, played out \
                             {playout}."
                        ))
                        .para(
                            "`stream` tells which stream it is (a peer may open several); \
                             `frame` carries the sender's sequence number and timestamp, and \
                             how many frames were lost just before it."
                                .to_string(),
                        )
                        .attrs();
                    let (open, end) = names.hooks.as_ref().expect("streams have hooks");
                    let open = ident(open);
                    let end = ident(end);
                    let open_doc = Doc::default()
                        .para(format!(
                            "Called when a peer opens a `{}` stream, before its first frame. \
                             Does nothing unless implemented.",
                            method.name
                        ))
                        .attrs();
                    let end_doc = Doc::default()
                        .para(format!(
                            "Called when a `{}` stream ends: finished by the peer, reset, or \
                             its connection lost. Does nothing unless implemented.",
                            method.name
                        ))
                        .attrs();
                    quote! {
                        #doc
                        #deprecated
                        async fn #name(
                            &self,
                            session: &#rt::Session,
                            stream: &#rt::StreamInfo,
                            frame: #rt::Played<#input>,
                        );

                        #open_doc
                        async fn #open(&self, session: &#rt::Session, stream: &#rt::StreamInfo) {
                            let _ = (session, stream);
                        }

                        #end_doc
                        async fn #end(
                            &self,
                            session: &#rt::Session,
                            stream: &#rt::StreamInfo,
                            end: #rt::StreamEnd,
                        ) {
                            let _ = (session, stream, end);
                        }
                    }
                }
            }
        });
        quote! {
            #doc
            #[#rt::async_trait]
            pub trait #trait_name: ::core::marker::Send + ::core::marker::Sync + 'static {
                #(#methods)*
            }
        }
    }

    /// `pub struct ChatServiceServer<T>` and its `Service` implementation.
    fn server(&self) -> TokenStream {
        let rt = rt();
        let trait_name = ident(&self.names.service);
        let server = ident(&self.names.server);
        let module = self.module();
        let doc = Doc::default()
            .para(format!(
                "Serves an implementation of [`{}`]: give it to `Server::builder().service(..)` \
                 or `Client::builder().service(..)`, or add it to a `Router`. Its handlers are \
                 registered under the methods' fully-qualified names (`{}/<method>`).",
                self.names.service, self.service.full_name
            ))
            .attrs();
        let registrations: Vec<TokenStream> = self
            .service
            .methods
            .iter()
            .map(|method| {
                let names = MethodNames::of(method);
                let name = ident(&names.method);
                let constant = ident(&names.constant);
                match &method.kind {
                    MethodKind::Rpc { .. } => quote! {
                        #module::#constant.serve(router, &service, |service, session, request| service.#name(session, request));
                    },
                    MethodKind::Event => quote! {
                        #module::#constant.serve(router, &service, |service, session, event| service.#name(session, event));
                    },
                    MethodKind::Stream { .. } => {
                        let (open, end) = names.hooks.as_ref().expect("streams have hooks");
                        let open = ident(open);
                        let end = ident(end);
                        quote! {
                            #module::#constant.serve(
                                router,
                                &service,
                                #rt::typed::StreamFns {
                                    open: |service, session, stream| service.#open(session, stream),
                                    frame: |service, session, stream, frame| service.#name(session, stream, frame),
                                    end: |service, session, stream, end| service.#end(session, stream, end),
                                },
                            );
                        }
                    }
                }
            })
            .collect();
        let allow = self
            .service
            .methods
            .iter()
            .any(|m| m.deprecated)
            .then(|| quote!(#[allow(deprecated)]));
        let body = if registrations.is_empty() {
            quote!(let _ = (self, router);)
        } else {
            quote! {
                let service = self.service;
                #(#registrations)*
            }
        };
        quote! {
            #doc
            #[derive(Debug)]
            pub struct #server<T> {
                service: ::std::sync::Arc<T>,
            }

            impl<T: #trait_name> #server<T> {
                /// Serves `service`.
                pub fn new(service: T) -> Self {
                    Self::from_arc(::std::sync::Arc::new(service))
                }

                /// Serves a shared `service`.
                pub fn from_arc(service: ::std::sync::Arc<T>) -> Self {
                    Self { service }
                }
            }

            impl<T> ::core::clone::Clone for #server<T> {
                fn clone(&self) -> Self {
                    Self {
                        service: ::std::sync::Arc::clone(&self.service),
                    }
                }
            }

            impl<T: #trait_name> #rt::Service for #server<T> {
                #allow
                fn register(self, router: &mut #rt::Router) {
                    #body
                }
            }
        }
    }

    /// `pub struct ChatServiceClient` and its methods.
    fn client(&self) -> TokenStream {
        let rt = rt();
        let client = ident(&self.names.client);
        let module = self.module();
        let served = if self.sides.server {
            format!("; the peer serves it with [`{}`]", self.names.server)
        } else {
            String::new()
        };
        let doc = self
            .summary()
            .para(format!(
                "Calls the service on the peer of a session, with the options the schema gives \
                 each method{served}. Cheap to clone."
            ))
            .attrs();
        let methods = self.service.methods.iter().map(|method| {
            let names = MethodNames::of(method);
            let name = ident(&names.method);
            let with = ident(&names.with);
            let constant = ident(&names.constant);
            let input = self.ty(&method.input);
            let deprecated = method_attrs(method, &names);
            let decl = declaration(method);
            let constant_path = format!("{}::{}", self.names.module, names.constant);
            let schema_doc = Doc::default().schema(&method.doc);
            match &method.kind {
                MethodKind::Rpc {
                    output, options, ..
                } => {
                    let output = self.ty(output);
                    let timeout = match options.timeout_ms {
                        Some(ms) => format!("a timeout of {ms} ms"),
                        None => "the endpoint's default timeout".to_string(),
                    };
                    let doc = schema_doc
                        .para(format!("Calls `{decl}` on the peer, with {timeout}."))
                        .attrs();
                    let with_doc = Doc::default()
                        .para(format!(
                            "Calls `{decl}` on the peer with `options` instead of the \
                             schema's: [`{constant_path}`]`.call_options()` are the schema's, \
                             to start from."
                        ))
                        .attrs();
                    quote! {
                        #doc
                        #deprecated
                        pub async fn #name(
                            &self,
                            request: impl ::core::borrow::Borrow<#input>,
                        ) -> ::core::result::Result<#output, #rt::Status> {
                            let options = #module::#constant.call_options();
                            #module::#constant.call(&self.session, request.borrow(), &options).await
                        }

                        #with_doc
                        #deprecated
                        pub async fn #with(
                            &self,
                            request: impl ::core::borrow::Borrow<#input>,
                            options: #rt::CallOptions,
                        ) -> ::core::result::Result<#output, #rt::Status> {
                            #module::#constant.call(&self.session, request.borrow(), &options).await
                        }
                    }
                }
                MethodKind::Event => {
                    let doc = schema_doc
                        .para(format!(
                            "Emits `{decl}` to the peer. Returns once it is queued; events \
                             arrive in the order they were emitted."
                        ))
                        .attrs();
                    let with_doc = Doc::default()
                        .para(format!("Emits `{decl}` to the peer, with frame metadata."))
                        .attrs();
                    quote! {
                        #doc
                        #deprecated
                        pub async fn #name(
                            &self,
                            event: impl ::core::borrow::Borrow<#input>,
                        ) -> ::core::result::Result<(), #rt::Status> {
                            #module::#constant.emit(&self.session, event.borrow()).await
                        }

                        #with_doc
                        #deprecated
                        pub async fn #with(
                            &self,
                            event: impl ::core::borrow::Borrow<#input>,
                            metadata: #rt::Metadata,
                        ) -> ::core::result::Result<(), #rt::Status> {
                            let event = event.borrow();
                            #module::#constant.emit_with(&self.session, event, metadata).await
                        }
                    }
                }
                MethodKind::Stream { options } => {
                    let delivery = match options.delivery {
                        Delivery::Reliable => "reliable",
                        Delivery::Datagram => "datagram",
                    };
                    let doc = schema_doc
                        .para(format!(
                            "Opens a `{decl}` to the peer: {delivery} delivery, frames of at \
                             most {} bytes.",
                            options.max_frame_bytes
                        ))
                        .attrs();
                    let with_doc = Doc::default()
                        .para(format!(
                            "Opens a `{decl}` to the peer with `options`: \
                             [`{constant_path}`]`.stream_options()` are the schema's, to start \
                             from."
                        ))
                        .attrs();
                    quote! {
                        #doc
                        #deprecated
                        pub async fn #name(
                            &self,
                        ) -> ::core::result::Result<#rt::TypedStreamSender<#input>, #rt::Status> {
                            let options = #module::#constant.stream_options();
                            #module::#constant.open(&self.session, options).await
                        }

                        #with_doc
                        #deprecated
                        pub async fn #with(
                            &self,
                            options: #rt::StreamOptions,
                        ) -> ::core::result::Result<#rt::TypedStreamSender<#input>, #rt::Status> {
                            #module::#constant.open(&self.session, options).await
                        }
                    }
                }
            }
        });
        quote! {
            #doc
            #[derive(Clone, Debug)]
            pub struct #client {
                session: #rt::Session,
            }

            impl #client {
                /// A client of the peer of `session`.
                pub fn new(session: #rt::Session) -> Self {
                    Self { session }
                }

                /// The session it calls on.
                pub fn session(&self) -> &#rt::Session {
                    &self.session
                }

                #(#methods)*
            }
        }
    }
}

/// A method's declaration as the schema would write it, types fully qualified:
/// `rpc login(chat.v1.Login) returns (chat.v1.Welcome) [timeout_ms = 2000]`.
pub fn declaration(method: &Method) -> String {
    let mut options = Vec::new();
    let head = match &method.kind {
        MethodKind::Rpc {
            output,
            options: rpc,
            ..
        } => {
            if let Some(ms) = rpc.timeout_ms {
                options.push(format!("timeout_ms = {ms}"));
            }
            if rpc.idempotent {
                options.push("idempotent = true".to_string());
            }
            format!("rpc {}({}) returns ({output})", method.name, method.input)
        }
        MethodKind::Event => format!("event {}({})", method.name, method.input),
        MethodKind::Stream { options: stream } => {
            if stream.delivery == Delivery::Datagram {
                options.push("delivery = datagram".to_string());
            }
            if stream.jitter_ms != 0 {
                options.push(format!("jitter_ms = {}", stream.jitter_ms));
            }
            if stream.max_frame_bytes != StreamOptions::DEFAULT_MAX_FRAME_BYTES {
                options.push(format!("max_frame_bytes = {}", stream.max_frame_bytes));
            }
            format!("stream {}({})", method.name, method.input)
        }
    };
    if method.deprecated {
        options.push("deprecated = true".to_string());
    }
    if options.is_empty() {
        head
    } else {
        format!("{head} [{}]", options.join(", "))
    }
}

/// The attributes of a generated trait or client method: `#[deprecated]` for a deprecated
/// method, and an allowance for clippy's `wrong_self_convention` when the schema names a method
/// like a conversion (`from_device`, `into_room`, `to_frames_mut`): it takes `&self` like every
/// generated method, and the name is the schema's.
fn method_attrs(method: &Method, names: &MethodNames) -> TokenStream {
    let mut attrs = TokenStream::new();
    if method.deprecated {
        attrs.extend(quote!(#[deprecated]));
    }
    let name = names.method.trim_start_matches("r#");
    let conversion = name.starts_with("from_")
        || name.starts_with("into_")
        || (name.starts_with("to_") && name.ends_with("_mut"));
    if conversion {
        attrs.extend(quote!(#[allow(clippy::wrong_self_convention)]));
    }
    attrs
}

/// The width generated doc paragraphs are wrapped at.
const DOC_WIDTH: usize = 90;

/// A doc comment being built: paragraphs of schema text and of generated text.
#[derive(Default)]
struct Doc {
    lines: Vec<String>,
}

impl Doc {
    /// The schema's doc `text`, as written (rustdoc-safe).
    fn schema(mut self, text: &str) -> Doc {
        let lines = docs::schema_lines(text);
        if !lines.is_empty() {
            self.break_paragraph();
            self.lines.extend(lines);
        }
        self
    }

    /// The schema's doc `text`, or `fallback` if there is none.
    fn schema_or(self, text: &str, fallback: String) -> Doc {
        if docs::rustdoc_lines(text).is_empty() {
            self.para(fallback)
        } else {
            self.schema(text)
        }
    }

    /// A generated paragraph, wrapped.
    fn para(mut self, text: String) -> Doc {
        self.break_paragraph();
        self.lines.extend(docs::wrap(&text, DOC_WIDTH));
        self
    }

    fn break_paragraph(&mut self) {
        if !self.lines.is_empty() {
            self.lines.push(String::new());
        }
    }

    /// `#[doc = ...]` attributes, one per line (after a space, as `///` comments have it).
    fn attrs(&self) -> TokenStream {
        let lines = self.lines.iter().map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!(" {l}")
            }
        });
        quote!(#(#[doc = #lines])*)
    }
}

/// An identifier, raw (`r#type`) when the name says so.
pub fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => format_ident!("{}", name),
    }
}
