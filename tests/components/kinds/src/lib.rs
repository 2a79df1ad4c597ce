//! One echo function per kind of WIT type: the JSON mapping's round trip,
//! through the HTTP gateway and a real component.

mod bindings {
    wit_bindgen::generate!({
        path: "world.wit",
        world: "test:kinds/kinds",
        generate_all,
    });
}

use bindings::exports::test::kinds::echo::{Color, Guest, Perms, Point, Shape};

struct Kinds;

bindings::export!(Kinds with_types_in bindings);

impl Guest for Kinds {
    fn echo_bool(x: bool) -> bool {
        x
    }
    fn echo_s8(x: i8) -> i8 {
        x
    }
    fn echo_u8(x: u8) -> u8 {
        x
    }
    fn echo_s16(x: i16) -> i16 {
        x
    }
    fn echo_u16(x: u16) -> u16 {
        x
    }
    fn echo_s32(x: i32) -> i32 {
        x
    }
    fn echo_u32(x: u32) -> u32 {
        x
    }
    fn echo_s64(x: i64) -> i64 {
        x
    }
    fn echo_u64(x: u64) -> u64 {
        x
    }
    fn echo_f32(x: f32) -> f32 {
        x
    }
    fn echo_f64(x: f64) -> f64 {
        x
    }
    fn echo_char(x: char) -> char {
        x
    }
    fn echo_string(x: String) -> String {
        x
    }
    fn echo_bytes(x: Vec<u8>) -> Vec<u8> {
        x
    }
    fn echo_list(x: Vec<i64>) -> Vec<i64> {
        x
    }
    fn echo_tuple(x: (u8, String, f32)) -> (u8, String, f32) {
        x
    }
    fn echo_record(x: Point) -> Point {
        x
    }
    fn echo_variant(x: Shape) -> Shape {
        x
    }
    fn echo_enum(x: Color) -> Color {
        x
    }
    fn echo_flags(x: Perms) -> Perms {
        x
    }
    fn echo_option(x: Option<u64>) -> Option<u64> {
        x
    }
    fn echo_option_option(x: Option<Option<String>>) -> Option<Option<String>> {
        x
    }
    fn echo_result(x: Result<Point, Color>) -> Result<Point, Color> {
        x
    }
    fn echo_unit_result(x: Result<(), ()>) -> Result<(), ()> {
        x
    }
    fn echo_nested(x: Vec<Option<Shape>>) -> Vec<Option<Shape>> {
        x
    }
    fn echo_many(a: u64, b: i64, c: f64, d: char) -> (u64, i64, f64, char) {
        (a, b, c, d)
    }
    fn nothing() {}
}
