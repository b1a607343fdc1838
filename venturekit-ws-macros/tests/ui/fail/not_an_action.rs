use venturekit_ws::actions;

struct Plain;

fn main() {
    let _ = actions![Plain];
}
