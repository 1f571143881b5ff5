//! Components that ask for many memories or tables at instantiation: no language toolchain
//! writes those, so they are assembled here, a core module of a few functions encoded with
//! `wasm-encoder` and made a component of the `projection` world (`wit/`) with `wit-component`,
//! as `cargo component` or `wasm-tools component new` would. Their functions are never reached:
//! the memory budget refuses the instance before its first instruction.

use wasm_encoder::{
    CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemorySection, MemoryType, Module,
    RefType, TableSection, TableType, TypeSection, ValType,
};

/// A component with `memories` linear memories of `pages` 64 KiB pages each and `tables`
/// tables of `elements` function references each, exporting what the `projection` world asks.
pub fn component(memories: u32, pages: u64, tables: u32, elements: u64) -> Vec<u8> {
    let mut module = core_module(memories.max(1), pages, tables, elements);
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) =
        resolve.push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit")).expect("the WIT contract parses");
    let world = resolve.select_world(&[package], Some("projection")).expect("the projection world");
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
        .expect("the world embeds");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("the core module fits the world")
        .validate(true)
        .encode()
        .expect("the component encodes")
}

fn core_module(memories: u32, pages: u64, tables: u32, elements: u64) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]); // describe
    types.ty().function([ValType::I32, ValType::I32], [ValType::I32]); // handle
    types.ty().function([ValType::I32; 4], [ValType::I32]); // cabi_realloc
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    for ty in 0..3 {
        functions.function(ty);
        let mut body = Function::new([]);
        body.instruction(&Instruction::Unreachable).instruction(&Instruction::End);
        code.function(&body);
    }
    let mut table_section = TableSection::new();
    for _ in 0..tables {
        table_section.table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: elements,
            maximum: None,
            shared: false,
        });
    }
    let mut memory_section = MemorySection::new();
    for _ in 0..memories {
        memory_section.memory(MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    for (index, name) in ["describe", "handle", "cabi_realloc"].into_iter().enumerate() {
        exports.export(name, ExportKind::Func, index as u32);
    }
    let mut module = Module::new();
    module.section(&types).section(&functions);
    if tables > 0 {
        module.section(&table_section);
    }
    module.section(&memory_section).section(&exports).section(&code);
    module.finish()
}
