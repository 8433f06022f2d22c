import { useEffect, useId, useRef, useState } from "react";
import { getJson } from "../api";

export interface PickerOption {
  id: string;
  label: string;
  detail: string;
}

interface PickerProps<T> {
  label: string;
  /** The id picked, or null. */
  value: string | null;
  onChange(id: string | null): void;
  /** The API path that searches for `text`, a page at a time (the server filters and pages). */
  searchPath(text: string): string;
  /** The API path of one item, to name an id given in the address. */
  itemPath(id: string): string;
  items(response: unknown): T[];
  option(item: T): PickerOption;
}

/**
 * An ARIA 1.2 combobox: type part of a name, pick from the server's matches with the arrow keys
 * and Enter, or the mouse. It holds an id; the text is only for finding it.
 */
export function Picker<T>({ label, value, onChange, searchPath, itemPath, items, option }: PickerProps<T>) {
  const id = useId();
  const listId = `${id}-list`;
  const [text, setText] = useState("");
  const [options, setOptions] = useState<PickerOption[]>([]);
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(-1);
  const [named, setNamed] = useState<PickerOption | null>(null);
  const typed = useRef(false);

  // Name the id given (from the address, or picked): fetch it once.
  useEffect(() => {
    if (!value) {
      // Cleared from outside (the filters were reset): the name goes too.
      if (named) setText("");
      return void setNamed(null);
    }
    if (named?.id === value) return;
    const abort = new AbortController();
    getJson<unknown>(itemPath(value), abort.signal).then(
      (item) => {
        const o = option(item as T);
        setNamed(o);
        setText(o.label);
      },
      () => setText(value),
    );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [value]);

  useEffect(() => {
    if (!typed.current) return;
    const q = text.trim();
    if (!q) return void setOptions([]);
    const abort = new AbortController();
    const timer = setTimeout(() => {
      getJson<unknown>(searchPath(q), abort.signal).then(
        (res) => {
          setOptions(items(res).map(option));
          setActive(-1);
          setOpen(true);
        },
        () => setOptions([]),
      );
    }, 200);
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [text]);

  const pick = (o: PickerOption | null) => {
    typed.current = false;
    setNamed(o);
    setText(o?.label ?? "");
    setOpen(false);
    setOptions([]);
    setActive(-1);
    onChange(o?.id ?? null);
  };

  return (
    <div className="picker">
      <label htmlFor={id}>{label}</label>
      <div className="picker-row">
        <input
          id={id}
          type="text"
          role="combobox"
          autoComplete="off"
          aria-autocomplete="list"
          aria-expanded={open && options.length > 0}
          aria-controls={listId}
          aria-activedescendant={open && active >= 0 && active < options.length ? `${listId}-${active}` : undefined}
          placeholder="Type a name"
          value={text}
          onChange={(e) => {
            typed.current = true;
            setText(e.target.value);
            if (value && e.target.value === "") onChange(null);
          }}
          onKeyDown={(e) => {
            if (e.key === "ArrowDown") {
              e.preventDefault();
              setOpen(true);
              setActive((a) => Math.min(a + 1, options.length - 1));
            } else if (e.key === "ArrowUp") {
              e.preventDefault();
              setActive((a) => Math.max(a - 1, 0));
            } else if (e.key === "Enter" && open && active >= 0) {
              e.preventDefault();
              pick(options[active]);
            } else if (e.key === "Escape") {
              setOpen(false);
            }
          }}
          onBlur={() => setTimeout(() => setOpen(false), 150)}
        />
        {value ? (
          <button type="button" className="secondary small" aria-label={`Clear ${label.toLowerCase()}`} onClick={() => pick(null)}>
            ×
          </button>
        ) : null}
      </div>
      <ul id={listId} role="listbox" aria-label={`${label} matches`} className="picker-list" hidden={!open || options.length === 0}>
        {options.map((o, i) => (
          <li
            key={o.id}
            id={`${listId}-${i}`}
            role="option"
            aria-selected={i === active}
            className={i === active ? "active" : undefined}
            onMouseDown={(e) => {
              e.preventDefault();
              pick(o);
            }}
          >
            <span>{o.label}</span> <span className="muted">{o.detail}</span>
          </li>
        ))}
      </ul>
    </div>
  );
}
