/**
 * A small XML well-formedness check for the hand-written SVG plots (pipeline's sweepSvg, and the CLI's sweep
 * output, whose tests import it from here): every tag closes in order, attributes are quoted, no stray '<' or
 * unescaped '&' in text, nothing after the root element. Returns the element names in document order and the
 * text nodes inside the root.
 */
export function checkXml(xml: string): { elements: string[]; texts: string[] } {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  const elements: string[] = [];
  const texts: string[] = [];
  const re = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  let closedRoot = false;
  while (!closedRoot && (m = re.exec(body)) !== null) {
    pos = re.lastIndex;
    if (m[5] !== undefined) {
      if (/&(?!amp;|lt;|gt;|quot;|apos;|#\d+;)/.test(m[5])) throw new Error(`unescaped & in text: ${m[5]}`);
      if (stack.length > 0 && m[5].trim() !== '') texts.push(m[5]);
      continue;
    }
    const [, close, name, , selfClose] = m;
    if (close) {
      if (stack.pop() !== name) throw new Error(`</${name}> does not close the open element`);
      closedRoot = stack.length === 0;
    } else {
      elements.push(name!);
      if (!selfClose) stack.push(name!);
    }
  }
  if (stack.length !== 0) throw new Error(`unclosed elements: ${stack.join(', ')}`);
  if (body.slice(pos).trim() !== '') throw new Error(`content after the root element at ${pos}: ${body.slice(pos, pos + 40)}`);
  return { elements, texts };
}
